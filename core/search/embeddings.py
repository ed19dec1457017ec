"""Image embeddings for similar-case search, and filling a case library with them.

An embedding is the input of a classifier's last FC layer (512 numbers for cxr-resnet18, as
in seed 000, section 3.2.1), L2-normalised so that the inner product of two embeddings is
their cosine similarity. Embeddings are stored with the case library under the model id and
:func:`embedding_version`, which includes the weights' sha256: new weights under the same
version string still make the stored vectors stale, and :func:`index_library` recomputes them.

Beside each embedding the library keeps a keyed digest of the image's decoded pixels
(:func:`pixel_digest`), which is how a query that is itself a library image is recognised:
the stored file was de-identified and maybe re-encoded, so its bytes differ from the upload's,
but its pixels do not.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from core.errors import DashboardError, InvalidInputError
from core.io.images import read_xray
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.preprocess import xray_to_input
from core.search.index import normalise
from core.types import Progress, XrayImage

#: The model whose embedding the search uses unless told otherwise.
REFERENCE_MODEL = "cxr-resnet18"
#: Stored image kinds that each model input kind can embed.
EMBEDDABLE_KINDS: dict[str, tuple[str, ...]] = {"xray": ("xray",), "ct-slice": ("ct-slice",)}
BATCH_SIZE = 32


def embedding_version(model: LoadedModel) -> str:
    """The key embeddings are stored under: the card's version and the weights' digest."""
    return f"{model.card.version}+{model.card.sha256[:16]}"


def check_embeddable(model: LoadedModel) -> tuple[str, ...]:
    """The stored image kinds ``model`` embeds; a plain error for models that cannot."""
    kinds = EMBEDDABLE_KINDS.get(model.card.input_kind)
    if kinds is None or not callable(getattr(model.module, "embed", None)):
        raise InvalidInputError(
            f"{model.id} is a {model.card.input_kind} model; similar-case search needs an image model "
            f"(input kind {' or '.join(EMBEDDABLE_KINDS)}) with an embedding layer, such as {REFERENCE_MODEL}."
        )
    return kinds


def embed_inputs(model: LoadedModel, x: torch.Tensor) -> np.ndarray:
    """Prepared inputs (N, C, S, S) -> L2-normalised embeddings (N, D) float32."""
    with model.lock, torch.inference_mode():
        features = model.module.embed(x.to(model.device)).float().cpu().numpy()  # type: ignore[operator]
    return normalise(features)


def embed_xrays(model: LoadedModel, images: Sequence[XrayImage]) -> np.ndarray:
    """Embeddings (N, D) of radiographs, each prepared as the model's predictions prepare it."""
    if not images:
        raise ValueError("no images to embed")
    x = torch.cat([xray_to_input(image, model.card.input) for image in images])
    return embed_inputs(model, x)


def embed_xray(model: LoadedModel, image: XrayImage) -> np.ndarray:
    """The embedding (D,) of one radiograph."""
    return embed_xrays(model, [image])[0]


def pixel_digest(secret: bytes, image: XrayImage) -> str:
    """Keyed digest of an image's pixels, rounded to whole values as the library stores them.

    Keyed with the library's secret (like its other fingerprints): without it the digest
    cannot confirm that a given picture is in the library.
    """
    pixels = np.ascontiguousarray(np.rint(image.pixels), dtype="<i8")
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    mac.update(np.asarray(pixels.shape, dtype="<i8").tobytes())
    mac.update(pixels.tobytes())
    return mac.hexdigest()


@dataclass
class IndexReport:
    """What :func:`index_library` did."""

    model_id: str
    model_version: str
    total: int = 0  # images of the kinds this model embeds
    already: int = 0  # had an embedding for this version
    added: int = 0
    dropped_stale: int = 0  # embeddings of other versions removed
    problems: list[str] = field(default_factory=list)  # one line per image that could not be read

    def as_dict(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "total": self.total,
            "already": self.already,
            "added": self.added,
            "dropped_stale": self.dropped_stale,
            "problems": list(self.problems),
        }


def read_stored_xray(library: CaseLibrary, image_id: int) -> XrayImage:
    """A stored 2D image (radiograph or CT slice image) read back as an :class:`XrayImage`."""
    record = library.image_record(image_id)
    if record.kind == "ct-series":
        raise InvalidInputError(f"Image {image_id} is a CT series, not a 2D image.")
    _, data = library.image_files(record)[0]
    return read_xray(data, f"stored image {image_id}")


def index_library(
    library: CaseLibrary,
    model: LoadedModel,
    *,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> IndexReport:
    """Embed every library image ``model`` can embed that has no embedding for its current
    weights; drop the model's embeddings of other weights. Incremental: run it again after an
    import and only the new images are embedded. Images that cannot be read are reported in
    ``problems`` and skipped (tried again next time).
    """
    kinds = check_embeddable(model)
    version = embedding_version(model)
    report = IndexReport(model.id, version)
    report.dropped_stale = library.drop_embeddings(model.id, version)
    refs = library.image_refs(kinds)
    done_ids, _ = library.embeddings(model.id, version)
    have = set(done_ids)
    todo = [r.image_id for r in refs if r.image_id not in have]
    report.total, report.already = len(refs), len(refs) - len(todo)
    secret = library.secret()
    if progress and todo:
        progress(0, len(todo))
    for start in range(0, len(todo), batch_size):
        ids: list[int] = []
        inputs: list[torch.Tensor] = []
        digests: dict[int, str] = {}
        for image_id in todo[start : start + batch_size]:
            try:
                image = read_stored_xray(library, image_id)
            except DashboardError as e:
                report.problems.append(f"image {image_id}: {e}")
                continue
            # Keep only the small model input: a batch of full-size radiographs would not fit.
            inputs.append(xray_to_input(image, model.card.input))
            digests[image_id] = pixel_digest(secret, image)
            ids.append(image_id)
        if ids:
            vectors = embed_inputs(model, torch.cat(inputs))
            library.put_pixel_digests(digests)
            library.put_embeddings(model.id, version, dict(zip(ids, vectors, strict=True)))
            report.added += len(ids)
        if progress:
            progress(min(start + batch_size, len(todo)), len(todo))
    return report
