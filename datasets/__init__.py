"""Offline datasets for ALM: one in-memory episode layout, D4RL HDF5 and Minari on disk.

See ``datasets/README.md`` for the formats and the rules used to read them.
"""

from .action_box import ActionBox
from .collect import collect, random_policy
from .convert import (
    BUNDLED_DATASET,
    bundled_dataset_path,
    check_writable,
    collect_dataset,
    convert,
    describe_listing,
    infer_format,
    list_datasets,
    load_dataset,
    resolve_destination,
    save_dataset,
)
from .episodes import (
    DatasetError,
    DatasetWarning,
    EpisodeDataset,
)
from .formats import FORMATS, DatasetFormat
from .hdf5 import read_hdf5, write_hdf5
from .minari_io import read_minari_folder, read_minari_id, write_minari

__all__ = [
    "BUNDLED_DATASET",
    "FORMATS",
    "ActionBox",
    "DatasetError",
    "DatasetFormat",
    "DatasetWarning",
    "EpisodeDataset",
    "bundled_dataset_path",
    "check_writable",
    "collect",
    "collect_dataset",
    "convert",
    "describe_listing",
    "infer_format",
    "list_datasets",
    "load_dataset",
    "random_policy",
    "read_hdf5",
    "read_minari_folder",
    "read_minari_id",
    "resolve_destination",
    "save_dataset",
    "write_hdf5",
    "write_minari",
]
