"""How a method learns: gradient steps over epochs, or one pass over the nominal images.

``make_learner`` asks the method (``Method.learns_by_gradient``). A gradient learner has an
optimiser, a schedule and synthetic anomalies (``Trainer``); a method that learns without
gradients (a memory bank, statistics of nominal features) is fitted once (``SinglePassFit``).
Both checkpoint into the run folder and resume from it.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.data.base import ImageSet
from fcdd.data.supervision import Batch, Supervision
from fcdd.data.transforms import Augment, to_float
from fcdd.methods import Method
from fcdd.rundir import History, load_weights, read_checkpoint, write_checkpoint
from fcdd.runtime import DivergedError, autocast, progress_bar, resolve_precision
from fcdd.training.distributed import batch_losses, reduce_sums, shard

log = logging.getLogger("fcdd")

#: steps between two looks at the running loss (each look waits for the device)
CHECK_EVERY = 16

#: what a learner calls after each finished (checkpointed) epoch: ``(epoch, history)``, e.g. trackers
EpochHook = Callable[[int, History], None]


def prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """Produce the next items in a background thread while the caller works on the current one.

    Torch releases the GIL in its kernels, so the next batch's augmentation and noise overlap
    with this batch's forward and backward pass. Items keep their order, so runs stay
    reproducible; an exception in the producer is raised in the caller.
    """
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
            slots.put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            slots.put(err)

    worker = threading.Thread(target=produce, daemon=True, name="fcdd-prefetch")
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


class Trainer:
    """Optimises a method's per-sample loss over in-memory nominal images, epoch after epoch."""

    def __init__(self, config: Config, method: Method, supervision: Supervision, device: torch.device, out: Path | None = None,
                 on_epoch: EpochHook | None = None) -> None:
        self.config = config
        self.method = method.to(device)
        self.supervision = supervision
        self.device = device
        self.out = out
        self.on_epoch = on_epoch
        self.augment = Augment.from_config(config)
        self.precision = resolve_precision(config.precision, device)
        self.memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.method.to(memory_format=self.memory_format)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.precision == torch.float16)
        params = method.trainable_parameters()
        for module in method.frozen_modules():
            module.requires_grad_(False)
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, momentum=config.momentum, nesterov=True)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=config.milestones, gamma=config.lr_gamma)
        # a second, chained schedule (the milestones' checkpoint entry stays as it was)
        self.lr_decay = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, config.lr_decay) if config.lr_decay is not None else None
        self.history = History()
        self.epoch = 0
        self.generator = torch.Generator().manual_seed(config.seed)
        #: a batch's per-sample losses: the method's own, or through DDP on this process's shard
        self.batch_losses = batch_losses(self.method, device, config.batch_size)

    # --- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "epoch": self.epoch,
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "lr_decay": self.lr_decay.state_dict() if self.lr_decay is not None else None,
            "history": self.history.to_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "config": self.config.to_dict(),
        }

    def save_checkpoint(self) -> None:
        if self.out is not None:
            write_checkpoint(self.out, self.state())

    def load_checkpoint(self, path: Path) -> None:
        state = read_checkpoint(path, self.device)
        if int(state["epoch"]) > self.config.epochs:  # else the run would report fewer epochs than it trained
            raise ValueError(f"{path}: the checkpoint holds {int(state['epoch'])} finished epoch(s), more than the "
                             f"{self.config.epochs} asked for; pass --epochs {int(state['epoch'])} or more, or another --out")
        load_weights(self.method, state["method"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.lr_decay is not None and state.get("lr_decay") is not None:
            self.lr_decay.load_state_dict(state["lr_decay"])
        self.history = History.from_dict(state["history"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch = int(state["epoch"])
        log.info("resumed from %s after epoch %d", path, self.epoch)

    # --- loop --------------------------------------------------------------------------------
    def _frozen_eval(self) -> None:
        """Frozen pretrained stages keep their batch-norm statistics (``--frozen-bn fixed``); with
        ``adapt`` they stay in training mode, as in the paper's code, and follow the data."""
        if self.config.frozen_bn == "adapt":
            return
        for module in self.method.frozen_modules():
            module.eval()

    def _make_batches(self, train: ImageSet, batches: list[torch.Tensor]) -> Iterator[Batch]:
        """Indexing, augmentation and synthetic anomalies, batch after batch, in order."""
        for idx in batches:
            # with --load-size the larger decode, which ``Augment`` crops or resizes to the input size
            images = to_float((train.images if train.loaded is None else train.loaded)[idx]).to(self.device)
            maps = train.maps[idx].float().to(self.device)
            images, maps = self.augment(images, maps, self.generator)
            batch = self.supervision(images, maps, self.generator)
            batch = shard(batch)  # every process made the same global batch; each trains on its part
            batch.images = batch.images.contiguous(memory_format=self.memory_format)
            yield batch

    def train_epoch(self, train: ImageSet) -> None:
        self.method.train()
        self._frozen_eval()
        cfg = self.config
        # --epoch-repeats: every image that many times, in one shuffled order (1: a plain permutation)
        order = torch.randperm(len(train) * cfg.epoch_repeats, generator=self.generator) % len(train)
        # loss sums (all, nominal, anomalous) and the anomalous count stay on the device, so a
        # step never waits for it; they are read every CHECK_EVERY steps and at the end
        sums = torch.zeros(3, dtype=torch.float32 if self.device.type == "mps" else torch.float64, device=self.device)
        n_anomalous = torch.zeros((), dtype=torch.long, device=self.device)
        n = 0
        started = time.perf_counter()
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches.pop()  # a batch of one breaks batch norm
        plan = accumulation_plan([len(b) for b in batches], cfg.accumulate)
        source = self._make_batches(train, batches)
        if self.device.type != "cpu":
            # on an accelerator the CPU is free to prepare the next batch meanwhile; on the CPU
            # the preparing thread would compete with the network's own threads (measured
            # slower on 2 cores), so batches are made in line there
            source = prefetch(source)
        bar = progress_bar(source, total=len(batches),
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False, unit="batch")
        self.optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(bar, 1):
            weight, steps = plan[step - 1]
            with autocast(self.device, self.precision):
                losses = self.batch_losses(batch, steps).float()  # DDP syncs gradients where the optimiser steps
            self.scaler.scale(losses.mean() * weight).backward()
            if steps:  # the last batch of an accumulation group (--accumulate)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                anomalous = batch.labels.to(losses.device).bool()
                sums += torch.stack([losses.sum(), torch.where(anomalous, 0.0, losses).sum(), torch.where(anomalous, losses, 0.0).sum()])
                n_anomalous += anomalous.sum()
                n += len(losses)
            if step % CHECK_EVERY == 0:
                bar.set_postfix(loss=f"{self._finite_loss(float(sums[0]) / n):.4f}")
        seconds = time.perf_counter() - started
        sums, n_anomalous, n = reduce_sums(sums, n_anomalous, n)  # over all processes
        total, nominal, anomalous_sum = sums.tolist()
        counts = (n, n - int(n_anomalous), int(n_anomalous))
        self._finite_loss(total / n if n else 0.0)
        h = self.history
        h.lr.append(self.optimizer.param_groups[0]["lr"])
        for key, value, count in zip(("loss", "nominal", "anomalous"), (total, nominal, anomalous_sum), counts, strict=True):
            getattr(h, key).append(value / count if count else float("nan"))
        h.seconds.append(seconds)
        h.images_per_second.append(n / seconds if seconds else 0.0)
        self.scheduler.step()
        if self.lr_decay is not None:
            self.lr_decay.step()
        self.epoch += 1

    def _finite_loss(self, loss: float) -> float:
        """``loss`` when finite; else the run stops here, before this epoch is checkpointed or
        evaluated, with what to change (any non-finite step makes the running mean non-finite)."""
        if math.isfinite(loss):
            return loss
        cfg = self.config
        advice = f"lower --lr (now {cfg.lr:g} with {cfg.optimizer})"
        if self.precision is not None:
            advice += f" or train with --precision fp32 (now {cfg.precision})"
        raise DivergedError(f"training diverged in epoch {self.epoch + 1} of {cfg.epochs}: the loss became {loss}; {advice}")

    def fit(self, train: ImageSet) -> History:
        if len(train) == 0:
            raise ValueError("no training images")
        if self.epoch == 0:  # a resumed run has the range in its checkpoint
            self.method.fit_input_range(train.images)
        progress = progress_bar(total=self.config.epochs, initial=self.epoch, desc="training", unit="epoch")
        try:
            while self.epoch < self.config.epochs:
                self.train_epoch(train)
                self.save_checkpoint()
                h = self.history
                progress.update(1)
                progress.set_postfix(loss=f"{h.loss[-1]:.4f}", img_s=f"{h.images_per_second[-1]:.1f}")
                log.info(epoch_line(self.epoch, self.config.epochs, h))
                if self.on_epoch is not None:
                    self.on_epoch(self.epoch, h)
        finally:
            progress.close()
        return self.history


def accumulation_plan(sizes: list[int], every: int) -> list[tuple[float, bool]]:
    """Per batch of an epoch: the factor on its mean loss and whether the optimiser steps after it.

    Batches go in groups of ``every`` (the epoch's last group may be shorter and steps too). Each
    batch's mean loss counts by its share of its group's images, so a step follows the mean loss
    of all the group's images, as one batch of them would (the paper's code concatenates them)."""
    plan: list[tuple[float, bool]] = []
    for start in range(0, len(sizes), every):
        group = sizes[start : start + every]
        total = sum(group)
        plan += [(size / total, i == len(group) - 1) for i, size in enumerate(group)]
    return plan


def epoch_line(epoch: int, epochs: int, h: History) -> str:
    """The one log line of a finished epoch (the last of ``h``): what a log file or a pipe shows
    instead of a progress bar."""
    return (f"epoch {epoch}/{epochs}: loss {h.loss[-1]:.5f} (nominal {h.nominal[-1]:.5f}, anomalous {h.anomalous[-1]:.5f}), "
            f"{h.images_per_second[-1]:.1f} img/s, lr {h.lr[-1]:.3g}")


class SinglePassFit:
    """Fits a method that learns without gradients in one pass over the nominal training images.

    No optimiser, epochs or synthetic anomalies; the fitted state (buffers) is checkpointed, so
    a resumed run does not fit again.
    """

    def __init__(self, config: Config, method: Method, supervision: Supervision, device: torch.device, out: Path | None = None,
                 on_epoch: EpochHook | None = None) -> None:
        self.config = config
        self.method = method.to(device)
        self.device = device
        self.out = out
        self.history = History()  # no epochs: ``on_epoch`` is never called
        self.epoch = 0
        #: what an interrupted fit saved (``Method.fit``'s ``state``)
        self.fit_state: dict | None = None

    def state(self) -> dict:
        return {"epoch": self.epoch, "method": self.method.state_dict(), "history": self.history.to_dict(),
                "config": self.config.to_dict(), "fit_state": self.fit_state}

    def save_fit_state(self, fit_state: dict) -> None:
        self.fit_state = fit_state
        if self.out is not None:
            write_checkpoint(self.out, self.state())

    def load_checkpoint(self, path: Path) -> None:
        state = read_checkpoint(path, self.device)
        self.epoch = int(state["epoch"])
        self.history = History.from_dict(state["history"])
        self.fit_state = state.get("fit_state")
        if self.epoch:
            load_weights(self.method, state["method"], path)
            log.info("resumed from %s: fitted before", path)
        else:
            log.info("resumed from %s: continuing an interrupted fit", path)

    def fit(self, train: ImageSet) -> History:
        if len(train) == 0:
            raise ValueError("no training images")
        if self.epoch:
            return self.history
        started = time.perf_counter()
        self.method.eval()
        with torch.no_grad():
            self.method.fit(train.images, self.config.eval_batch_size, self.device, state=self.fit_state, save=self.save_fit_state)
        seconds = time.perf_counter() - started
        h = self.history
        h.seconds.append(seconds)
        h.images_per_second.append(len(train) / seconds if seconds else 0.0)
        self.epoch = 1
        self.fit_state = None
        if self.out is not None:
            write_checkpoint(self.out, self.state())
        log.info("fitted on %d nominal images in %.1f s", len(train), seconds)
        return h


def make_learner(config: Config, method: Method, supervision: Supervision, device: torch.device, out: Path | None = None,
                 on_epoch: EpochHook | None = None) -> Trainer | SinglePassFit:
    """The learner the method asks for; ``on_epoch`` follows every finished epoch."""
    kind = Trainer if method.learns_by_gradient else SinglePassFit
    return kind(config, method, supervision, device, out, on_epoch)
