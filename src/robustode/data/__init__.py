"""Datasets: seeded toy problems (``robustode.data.toy``) and image sets (``robustode.data.images``)."""
