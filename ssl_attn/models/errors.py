"""Loading errors with messages that say what to do, and the hub-error translation.

Import-light (no torch): huggingface_hub is imported only inside :func:`hub_errors`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["GatedModelError", "ModelLoadError", "WeightsUnavailableError", "hub_errors"]


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


class GatedModelError(ModelLoadError, PermissionError):
    """The hub checkpoint is gated and this account has no access."""


class WeightsUnavailableError(ModelLoadError, FileNotFoundError):
    """The weights are neither cached nor reachable (offline, no network, missing folder)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend([e.__cause__, e.__context__])


@contextlib.contextmanager
def hub_errors(checkpoint: str, key: str | None = None) -> Iterator[None]:
    """Translate huggingface_hub / transformers download failures into clear messages.

    Gated repositories raise :class:`GatedModelError`; an uncached checkpoint while offline
    (``HF_HUB_OFFLINE=1``) or without network raises :class:`WeightsUnavailableError`.
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    name = key or checkpoint.rstrip("/").split("/")[-1]
    try:
        yield
    except ModelLoadError:
        raise
    except Exception as exc:
        chain = list(_chain(exc))
        text = " ".join(str(e) for e in chain).lower()
        if any(isinstance(e, GatedRepoError) for e in chain):
            raise GatedModelError(
                f"{checkpoint!r} is gated on the Hugging Face hub and this account has no access. "
                f"Log in at https://huggingface.co/{checkpoint}, accept the model's licence, then "
                "set HF_TOKEN to a token of that account (or pass token=...) and retry."
            ) from exc
        offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true")
        not_cached = (
            any(
                isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError))
                for e in chain
            )
            or "couldn't connect" in text  # transformers' wording for an uncached file
        )
        if not_cached:
            why = "HF_HUB_OFFLINE=1 is set" if offline else "the hub cannot be reached"
            raise WeightsUnavailableError(
                f"model {name!r}: checkpoint {checkpoint!r} is not in the local Hugging Face cache "
                f"and {why}. Download it where the hub is reachable (`hf download {checkpoint}`) "
                f"and copy the cache, or save the weights with save_pretrained into "
                f"DIR/{name}/ and pass weights_dir=DIR (CLI: --weights-dir DIR)."
            ) from exc
        if any(isinstance(e, RepositoryNotFoundError) for e in chain):
            raise ModelLoadError(
                f"model {name!r}: {checkpoint!r} was not found on the hub (check the id, the "
                "revision, and HF_TOKEN for private repositories)."
            ) from exc
        raise
