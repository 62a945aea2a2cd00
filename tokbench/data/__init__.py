"""Images for tokbench: folders, the embedded sample set, the ADM centre crop, uint8 rounding."""

from .datasets import (
    SAMPLE_PARTS,
    SAMPLE_SPLIT,
    Batch,
    ImageDataset,
    ImageFolderDataset,
    SampleDataset,
    SubsetDataset,
    check_num_images,
    data_record,
    iter_batches,
    open_dataset,
    split_by_source,
)
from .images import BadImageError, center_crop_adm, prepare, read_image, to_rgb8, to_uint8

__all__ = ["SAMPLE_PARTS", "SAMPLE_SPLIT", "Batch", "ImageDataset", "ImageFolderDataset", "SampleDataset", "SubsetDataset", "check_num_images",
           "data_record", "iter_batches",
           "open_dataset", "split_by_source", "BadImageError", "center_crop_adm", "prepare", "read_image", "to_rgb8",
           "to_uint8"]
