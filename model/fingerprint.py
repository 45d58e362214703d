"""Which model made a vector: one fingerprint for every runtime that gives the same vectors.

The service refuses to mix vectors from different models (its gallery records the fingerprint of
the model that filled it). The fingerprint covers what decides a vector: variant, input size,
normalisation, the embedded feature and every weight. An ONNX file exported from a checkpoint
carries the checkpoint's fingerprints in its metadata (one per feature), so ONNX Runtime fp32 and
torch count as the same model: their vectors agree to cosine >= 0.9999 (tested), far closer than
two trainings. An int8 file is another model (its vectors move by ~1e-2 in cosine): its fingerprint
hashes its own graph, so a gallery built in fp32 refuses int8 queries and the other way round.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from model.checkpoint import ModelMeta

if TYPE_CHECKING:
    import torch


def _digest_prefix(meta: ModelMeta, feature: str) -> bytes:
    return repr((meta.variant, tuple(meta.input_size), tuple(meta.mean), tuple(meta.std), feature)).encode()


def fingerprint_string(meta: ModelMeta, feature: str, digest_hex: str) -> str:
    """The readable form stored by the service: "rgasc 256x128 feat_ 0123456789abcdef"."""
    return f"{meta.variant} {meta.input_size[0]}x{meta.input_size[1]} {feature} {digest_hex[:16]}"


def torch_fingerprint(state_dict: Mapping[str, torch.Tensor], meta: ModelMeta, feature: str) -> str:
    """Fingerprint of a torch network's inference state dict (classifier dropped) for `feature`.

    The same value the service has stored since its first release, so existing galleries keep matching.
    """
    digest = hashlib.sha256()
    digest.update(_digest_prefix(meta, feature))
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return fingerprint_string(meta, feature, digest.hexdigest())


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of the weights alone (names and bytes, in state-dict order): the ONNX file's `weights_sha256`."""
    digest = hashlib.sha256()
    for name, tensor in state_dict.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def graph_fingerprint(graph_sha256: str, meta: ModelMeta, feature: str, precision: str) -> str:
    """Fingerprint of an ONNX graph that is not a faithful fp32 export of a checkpoint (int8, edited)."""
    digest = hashlib.sha256()
    digest.update(_digest_prefix(meta, feature))
    digest.update(f"onnx {precision} {graph_sha256}".encode())
    return fingerprint_string(meta, feature, digest.hexdigest()) + f" {precision}"
