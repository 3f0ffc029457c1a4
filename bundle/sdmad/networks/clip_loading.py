"""Build an open_clip CLIP model from a name, a source of weights and an input size.

Weights come from exactly one of: an open_clip pretrained tag (``"openai"``), a local checkpoint file, or
nothing (random weights, only when asked for explicitly). A tag is resolved from the local cache first;
when it is not cached and the weights host cannot be reached, loading fails within seconds with a message
that says how to pass a local file. It never falls back to random weights when weights were asked for.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch

from sdmad.errors import SDMADError

logger = logging.getLogger(__name__)

TINY_MODEL_NAME = "sdmad-tiny"
"""A small open_clip config registered by this package: real tokenizer, 4+4 blocks, random weights."""

_MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
_NO_WEIGHTS = (None, "", "none", "None", "random")


class PretrainedWeightsUnavailableError(SDMADError, RuntimeError):
    """Pretrained weights were asked for but cannot be obtained (offline, unknown tag, missing file)."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Where the CLIP weights come from: a file on disk and how open_clip must build the model for it."""

    path: str
    source: str
    quick_gelu: bool = False


def no_weights(pretrained: object) -> bool:
    """Whether ``pretrained`` asks for random weights (None, "", "none", "random")."""
    return pretrained in _NO_WEIGHTS


def register_model_configs() -> None:
    """Make this package's open_clip configs (e.g. ``sdmad-tiny``) known to ``open_clip.create_model``."""
    if TINY_MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(_MODEL_CONFIG_DIR)


def _hf_endpoint_host() -> str:
    return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"


def _host_reachable(host: str, timeout: float) -> bool:
    """One TCP connection attempt, so that an offline machine fails in seconds instead of after HF retries.

    Behind an HTTPS proxy the host itself may be unreachable while downloads work; then the download is tried.
    """
    if os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy"):
        return True
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_tag_file(tag_cfg: dict[str, Any], cache_dir: str | None) -> str | None:
    """The already-downloaded checkpoint of a tag, looked up without any network access."""
    if tag_cfg.get("file"):
        return tag_cfg["file"]
    if tag_cfg.get("hf_hub"):
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        # 'org/repo/' names the repo only; 'org/repo/file.bin' names a file too (open_clip's convention).
        repo_id, filename = os.path.split(tag_cfg["hf_hub"])
        # open_clip's defaults when the tag names no file: safetensors first, then the torch pickle.
        candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for candidate in candidates:
            try:
                return hf_hub_download(repo_id, candidate, cache_dir=cache_dir, local_files_only=True)
            except (LocalEntryNotFoundError, FileNotFoundError):
                continue
    if tag_cfg.get("url"):
        path = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(tag_cfg["url"])
        if path.is_file():
            return str(path)
    return None


def _tag_download_hint(model_name: str, tag: str, tag_cfg: dict[str, Any]) -> str:
    if tag_cfg.get("hf_hub"):
        repo_id = tag_cfg["hf_hub"].rstrip("/").split("/")
        where = f"https://huggingface.co/{'/'.join(repo_id[:2])}"
        what = "open_clip_model.safetensors (or open_clip_pytorch_model.bin)"
    else:
        where, what = tag_cfg.get("url", "the open_clip pretrained table"), "the checkpoint"
    quick_gelu = " --quick_gelu true" if tag_cfg.get("quick_gelu") else ""
    return (
        f"Download {what} from {where} on a machine with internet access, copy it here and pass its path "
        f"instead of the tag, e.g. `--pretrained /path/to/open_clip_model.safetensors{quick_gelu}` "
        f"(model '{model_name}', tag '{tag}'{'; these weights use QuickGELU' if quick_gelu else ''}); or put it in "
        f"the Hugging Face cache (HF_HOME)."
    )


def resolve_pretrained(
    model_name: str,
    pretrained: str | os.PathLike | None,
    cache_dir: str | None = None,
    probe_timeout_s: float = 3.0,
) -> ResolvedWeights | None:
    """Turn ``pretrained`` (tag, file path or none) into a checkpoint file, without silent fallbacks.

    Args:
        model_name: open_clip model name (e.g. ``"ViT-L-14-336"``).
        pretrained: an open_clip tag for that model, a path to a local checkpoint, or None/"none" for random weights.
        cache_dir: download/cache folder for tags (open_clip's and Hugging Face's defaults when None).
        probe_timeout_s: seconds to wait for the weights host before declaring the machine offline.

    Returns:
        The resolved weights, or None when no weights were asked for.

    Raises:
        PretrainedWeightsUnavailableError: the tag is unknown, or not cached and the host is unreachable,
            or the path does not exist.
    """
    if no_weights(pretrained):
        return None
    pretrained = str(pretrained)
    if os.path.isfile(pretrained):
        return ResolvedWeights(path=pretrained, source=f"file {pretrained}")
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        raise PretrainedWeightsUnavailableError(
            f"pretrained='{pretrained}' is neither an existing file nor an open_clip tag of model '{model_name}' "
            f"(known tags: {known or 'none'})."
        )
    quick_gelu = bool(tag_cfg.get("quick_gelu", False))
    cached = _cached_tag_file(tag_cfg, cache_dir)
    if cached:
        return ResolvedWeights(path=cached, source=f"tag '{pretrained}' (cached: {cached})", quick_gelu=quick_gelu)
    host = urlparse(tag_cfg["url"]).hostname if tag_cfg.get("url") and not tag_cfg.get("hf_hub") else None
    host = host or _hf_endpoint_host()
    if not _host_reachable(host, probe_timeout_s):
        raise PretrainedWeightsUnavailableError(
            f"Could not fetch the pretrained weights '{pretrained}' for '{model_name}': {host} cannot be reached "
            f"(offline?) and the weights are not in the local cache. "
            + _tag_download_hint(model_name, pretrained, tag_cfg)
        )
    try:
        path = open_clip.download_pretrained(tag_cfg, cache_dir=cache_dir)
    except Exception as err:  # any download failure becomes one actionable error
        raise PretrainedWeightsUnavailableError(
            f"Could not fetch the pretrained weights '{pretrained}' for '{model_name}': {err}. "
            + _tag_download_hint(model_name, pretrained, tag_cfg)
        ) from err
    return ResolvedWeights(path=path, source=f"tag '{pretrained}' (downloaded: {path})", quick_gelu=quick_gelu)


class _WithoutRandomWeightsWarning(logging.Filter):
    """Drops open_clip's "initialized randomly" warning (for a model built to be pretrained)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "initialized randomly" not in record.getMessage()


def load_clip(
    model_name: str,
    pretrained: str | os.PathLike | None = None,
    image_size: int | None = None,
    quick_gelu: bool | None = None,
    cache_dir: str | None = None,
    to_pretrain: bool = False,
) -> tuple[open_clip.CLIP, Callable[..., torch.Tensor]]:
    """Build an open_clip CLIP model and its tokenizer.

    Args:
        model_name: an open_clip model name (including this package's ``sdmad-tiny``) or ``local-dir:<folder>``.
        pretrained: tag, local checkpoint file, or None for random weights (ignored for ``local-dir:``).
        image_size: input size; the position embedding of the loaded weights is resized to the new grid
            (e.g. ViT-L-14-336 at 240 px: 17x17 patches).
        quick_gelu: force QuickGELU; None takes it from the tag (OpenAI weights use it) or False for files.
        cache_dir: cache folder for tag downloads.
        to_pretrain: random weights on purpose, for a model about to be pretrained (sdmad.tools.pretraining): said
            as information, without the warnings (open_clip's and this function's) that random weights get otherwise.

    Returns:
        ``(model, tokenizer)``, the model on CPU in eval mode.

    Raises:
        PretrainedWeightsUnavailableError: weights were asked for and cannot be obtained.
    """
    if to_pretrain and not no_weights(pretrained):
        raise ValueError(f"to_pretrain builds random weights; got pretrained={pretrained!r}")
    register_model_configs()
    if model_name.startswith(("local-dir:", "hf-hub:")):
        resolved, kwargs = None, {"model_name": model_name}
    else:
        resolved = resolve_pretrained(model_name, pretrained, cache_dir=cache_dir)
        kwargs = {"model_name": model_name, "pretrained": resolved.path if resolved else None}
        if resolved is not None:
            kwargs["require_pretrained"] = True
    use_quick_gelu = quick_gelu if quick_gelu is not None else bool(resolved and resolved.quick_gelu)
    root_filter = _WithoutRandomWeightsWarning() if to_pretrain else None
    if root_filter:
        logging.getLogger().addFilter(root_filter)  # open_clip warns on the root logger
    try:
        model = open_clip.create_model(
            **kwargs,
            force_image_size=image_size,
            force_quick_gelu=use_quick_gelu,
            weights_only=True,
            cache_dir=cache_dir,
        )
    finally:
        if root_filter:
            logging.getLogger().removeFilter(root_filter)
    if not isinstance(model, open_clip.CLIP):
        raise NotImplementedError(
            f"'{model_name}' builds a {type(model).__name__}; SD-MAD's text adapter supports open_clip's CLIP class "
            f"(built-in text transformer) only."
        )
    if to_pretrain:
        logger.info("CLIP %s at %s px with random weights, to be pretrained", model_name, image_size or "native")
    elif resolved is None and not model_name.startswith(("local-dir:", "hf-hub:")):
        logger.warning(
            "CLIP %s has RANDOM weights (pretrained=%r): fine for tests and shape checks, meaningless on "
            "real images; pass pretrained=<open_clip tag | local checkpoint file>.",
            model_name,
            pretrained,
        )
    else:
        logger.info(
            "CLIP %s at %s px, weights: %s",
            model_name,
            image_size or "native",
            resolved.source if resolved else model_name,
        )
    return model.eval(), open_clip.get_tokenizer(model_name)
