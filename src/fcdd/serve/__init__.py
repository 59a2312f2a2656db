"""``fcdd serve``: a FastAPI service and upload page for a trained model (needs the ``serve`` extra)."""
