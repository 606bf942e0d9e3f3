"""The safetensors files of a checkpoint directory and what their headers say.

Only headers are read here (key, shape, dtype, which file): enough to check a checkpoint against
the model before a single weight is touched. ``safetensors`` validates each header against the
file length, so a truncated or corrupt file is caught here too, with its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from qwen3core.checkpoint.config import read_json
from qwen3core.errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# safetensors dtype codes (header ``dtype`` field) -> torch dtypes. Integer and fp8 codes are
# listed so that a quantised checkpoint is reported by name rather than as "unknown".
_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
LOADABLE_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class TensorInfo:
    file: Path
    shape: tuple[int, ...]
    dtype: torch.dtype | str  # a str when safetensors names a dtype torch lacks

    @property
    def nbytes(self) -> int:
        size = torch.empty((), dtype=self.dtype).element_size() if isinstance(
            self.dtype, torch.dtype) else 1
        for n in self.shape:
            size *= n
        return size


@dataclass(frozen=True)
class WeightFiles:
    """Every tensor of a checkpoint: key -> :class:`TensorInfo`, in file order."""

    directory: Path
    files: tuple[Path, ...]
    tensors: dict[str, TensorInfo]

    @property
    def total_bytes(self) -> int:
        return sum(info.nbytes for info in self.tensors.values())

    def dominant_dtype(self) -> torch.dtype | None:
        """The dtype most bytes are stored in (for configs that do not declare one)."""
        totals: dict[torch.dtype, int] = {}
        for info in self.tensors.values():
            if info.dtype in LOADABLE_DTYPES:
                totals[info.dtype] = totals.get(info.dtype, 0) + info.nbytes
        return max(totals, key=totals.get) if totals else None

    def short_name(self, key: str) -> str:
        return self.tensors[key].file.name


def find_weight_files(directory: Path) -> WeightFiles:
    """Locate ``model.safetensors`` or the shards of ``model.safetensors.index.json`` and read
    their headers; raise :class:`CheckpointError` naming the file for anything wrong."""
    index_path = directory / INDEX_FILE
    if index_path.is_file():
        files, listed = _files_from_index(index_path)
    elif (directory / SINGLE_FILE).is_file():
        files, listed = [directory / SINGLE_FILE], None
    else:
        raise CheckpointError(_no_weights_message(directory))
    tensors: dict[str, TensorInfo] = {}
    for path in files:
        for key, info in read_header(path).items():
            if key in tensors:
                raise CheckpointError(f"tensor {key!r} is stored twice, in "
                                      f"{tensors[key].file.name} and {path.name}; the "
                                      "checkpoint is inconsistent, re-download it")
            tensors[key] = info
    if listed is not None:
        _check_index_agrees(index_path, listed, tensors)
    return WeightFiles(directory, tuple(files), tensors)


def read_header(path: Path) -> dict[str, TensorInfo]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            out = {}
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                view = handle.get_slice(key)
                code = view.get_dtype()
                out[key] = TensorInfo(path, tuple(view.get_shape()), _DTYPES.get(code, code))
            return out
    except SafetensorError as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file ({exc}): it is "
                              "truncated or corrupt; delete it and download it again") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def _files_from_index(index_path: Path) -> tuple[list[Path], dict[str, str]]:
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()):
        raise CheckpointError(f"{index_path} has no valid 'weight_map' (tensor name -> shard "
                              "file); re-download it")
    directory = index_path.parent
    names = sorted(set(weight_map.values()))
    for name in names:  # shard names come from a file: keep them inside the directory
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise CheckpointError(f"{index_path} points outside its directory: {name!r}")
    absent = [name for name in names if not (directory / name).is_file()]
    if absent:
        raise CheckpointError(f"{index_path} lists shard(s) that are missing from {directory}: "
                              f"{', '.join(absent)}; the download is incomplete, fetch them "
                              "again")
    return [directory / name for name in names], weight_map


def _check_index_agrees(index_path: Path, listed: dict[str, str],
                        tensors: dict[str, TensorInfo]) -> None:
    wrong = [f"{key} (index: {name}, found in: "
             f"{tensors[key].file.name if key in tensors else 'no shard'})"
             for key, name in listed.items()
             if key not in tensors or tensors[key].file.name != Path(name).name]
    if wrong:
        shown = "; ".join(wrong[:5]) + (f"; and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise CheckpointError(f"{index_path} does not agree with its shards: {shown}. The "
                              "shards and the index come from different versions; re-download")


def _no_weights_message(directory: Path) -> str:
    pickles = sorted(p.name for p in directory.glob("*")
                     if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    others = sorted(p.name for p in directory.glob("*.safetensors"))
    if others:
        return (f"{directory} has safetensors files ({', '.join(others[:4])}) but neither "
                f"{SINGLE_FILE} nor {INDEX_FILE}; a Hugging Face checkpoint names its weights "
                "that way (save it with transformers' save_pretrained)")
    if pickles:
        return (f"{directory} holds only pickled weights ({', '.join(pickles[:4])}), which "
                "qwen3core never loads (unpickling can run arbitrary code); convert them to "
                "safetensors, e.g. with transformers: from_pretrained(...).save_pretrained(dir)")
    return (f"{directory} has no weights: neither {SINGLE_FILE} nor {INDEX_FILE} is there. "
            "Pass a directory holding the model's *.safetensors files")
