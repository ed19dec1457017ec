"""Retrieving a series from the real archive, by C-GET and by WADO-RS: what arrives reads
exactly as the upload of the same files."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pydicom
import pytest

from core.io.ct_input import read_ct_upload
from core.io.images import read_xray
from core.pacs.retrieve import retrieve_series
from core.pacs.settings import PacsSettings
from tests.pacs.conftest import Archive, LoadedStudy

PROTOCOLS = ("dimse", "dicomweb")


def _settings(archive: Archive, protocol: str) -> PacsSettings:
    return archive.orthanc.dimse if protocol == "dimse" else archive.orthanc.dicomweb


def _retrieve(archive: Archive, protocol: str, study: LoadedStudy, **kwargs) -> list[tuple[str, bytes]]:
    return retrieve_series(_settings(archive, protocol), study.study_uid, study.series_uid, **kwargs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_xray_reads_as_its_upload(archive: Archive, protocol: str) -> None:
    files = _retrieve(archive, protocol, archive.xray)
    assert [name for name, _ in files] == ["IM00001.dcm"]
    got, sent = read_xray(files[0][1], "xray.dcm"), read_xray(archive.xray.files[0][1], "xray.dcm")
    assert np.array_equal(got.pixels, sent.pixels)
    assert dataclasses.replace(got, pixels=sent.pixels) == sent  # window, spacing, modality, warnings
    ds = pydicom.dcmread(io.BytesIO(files[0][1]))  # Part 10: preamble and file meta, as a file upload
    assert files[0][1][128:132] == b"DICM" and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("which", ["ct", "sample"])
def test_a_ct_series_reads_as_the_same_volume_with_progress_per_instance(
    archive: Archive, protocol: str, which: str
) -> None:
    study = getattr(archive, which)
    if study is None:
        pytest.skip("../shared/samples is not beside the project")
    seen: list[tuple[int, int]] = []
    files = _retrieve(archive, protocol, study, progress=lambda done, total: seen.append((done, total)))
    n = len(study.files)
    assert [name for name, _ in files] == [f"IM{i:05d}.dcm" for i in range(1, n + 1)]
    assert seen == [(i, n) for i in range(1, n + 1)]
    got, sent = read_ct_upload(files), read_ct_upload(list(study.files))
    assert np.array_equal(got.hu, sent.hu)
    assert got.spacing_mm == pytest.approx(sent.spacing_mm)
    sent_uids = {pydicom.dcmread(io.BytesIO(d), stop_before_pixels=True).SOPInstanceUID for _, d in study.files}
    got_uids = {pydicom.dcmread(io.BytesIO(d), stop_before_pixels=True).SOPInstanceUID for _, d in files}
    assert got_uids == sent_uids


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_count_the_search_gave_is_used_without_asking_again(archive: Archive, protocol: str) -> None:
    files = _retrieve(archive, protocol, archive.ct, expected=16)
    assert len(files) == 16
