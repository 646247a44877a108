"""Utilities users call directly: seeding, data unpacking, padding sequences, image folders, progress
bars, pictures."""

from .data_utils import pack_x_y_sample_weight, unpack_x_y_sample_weight
from .image_dataset import image_dataset_from_directory
from .model_visualization import model_to_graph, plot_model
from .plotting import plot_history, plot_images, plot_label_distribution
from .progbar import Progbar
from .random import set_random_seed
from .sequence_utils import pad_sequences

__all__ = [
    "Progbar",
    "image_dataset_from_directory",
    "model_to_graph",
    "pack_x_y_sample_weight",
    "pad_sequences",
    "plot_history",
    "plot_images",
    "plot_label_distribution",
    "plot_model",
    "set_random_seed",
    "unpack_x_y_sample_weight",
]
