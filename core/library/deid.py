"""De-identification of DICOM files before they enter the case library.

The rules follow the spirit of DICOM PS3.15 Annex E, the Basic Application Level Confidentiality
Profile, with the options *Retain Longitudinal Temporal Information with Modified Dates*,
*Retain Patient Characteristics* and *Clean Descriptors*. Everything is keyed by a per-library
secret, so that the same patient always gets the same pseudonym, date shift and UIDs within one
library, and nothing can be linked back without the secret.

What happens to each element (at any depth, inside sequences too):

Replaced
    Patient Name and Patient ID become the pseudonym (e.g. ``P-7K3Q9D2M``).
Emptied (kept present, zero length: they are Type 2 at the top level; removed when nested)
    Patient Birth Date, Accession Number, Referring Physician Name, Study ID.
Remapped
    Every UID (VR UI) through :meth:`Deidentifier.uid`, the file meta's Media Storage SOP
    Instance UID included, except UIDs that name a kind of thing rather than an instance:
    those defined by DICOM (``1.2.840.10008.*``: SOP classes, transfer syntaxes, well-known
    frames of reference, coding schemes), elements whose keyword ends in ``ClassUID`` (private
    SOP classes included; not Manufacturer's Device Class UID, which names one device),
    Transfer Syntax UID and Coding Scheme UID. References between files
    (series, study, frame of reference, referenced instances) therefore stay consistent.
Shifted
    Every date (DA) and the date part of every date-time (DT) by the patient's
    :meth:`Deidentifier.date_shift_days`; malformed or partial dates are removed. Times (TM)
    are kept, so intervals between studies of one patient are kept to the day.
Capped
    Patient Age of 90 years and more becomes ``090Y``; a malformed age is removed.
Removed
    Private elements; curves and overlays (groups 50xx and 60xx); every person name (PN) other
    than the above; every free text (LT, ST, UT), network address (AE) and element of unknown
    kind (UN, or a tag pydicom does not name); identifiers and their issuers (keywords ending in
    ``ID``/``IDs`` other than Patient ID and Study ID, ``Issuer...``); anything about addresses,
    telephones, institutions, physicians, operators, stations, comments or clinical trials;
    birth time, other patient IDs and names, ethnic group, occupation, military rank, religious
    preference, medical record locator, device serial number and UID, request attributes,
    original / modified attribute sequences, digital signatures, icon images, encapsulated
    documents, SR content; every "...Description" element other than the two below; every
    label, identifier, serial number, GPS position and hanging-protocol selector value
    (keywords containing ``Label``, ``Identifier``, ``SerialNumber``, ``Selector`` or starting
    with ``GPS``), and the other attributes of PS3.15 Table E.1-1 that these rules do not name
    (contrast agent, smoking status, camera maker notes, locations, RT plan and structure set
    names, ...: :data:`_REMOVED_KEYWORDS`).
Cleaned descriptors
    Study Description, Series Description and Protocol Name are kept when they name only an
    examination (they help a user find a series), and removed when they contain a word of the
    patient's or a physician's name, the patient ID, accession number, birth date or institution
    name, or a run of six or more digits (a number or a date).
Kept
    Everything else: patient sex, size, weight and (capped) age, modality, equipment make and
    model, acquisition and image geometry, pixel data and the transfer syntax unchanged.

Finally Patient Identity Removed is set to ``YES``, De-identification Method and its Code
Sequence say what was done, Longitudinal Temporal Information Modified is ``MODIFIED``, and the
file's 128-byte preamble (which may hold a TIFF header with its own tags) is zeroed.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import re
from io import BytesIO

import pydicom
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.utils import get_expected_length
from pydicom.tag import BaseTag

from core.errors import DashboardError, InvalidInputError, UnsupportedDicomError
from core.io.descriptors import IdentifyingTokens, element_strings, identifying_tokens

__all__ = ["DEIDENTIFICATION_METHOD", "Deidentifier"]

logger = logging.getLogger(__name__)

#: De-identification Method (0012,0063) written into every de-identified file.
DEIDENTIFICATION_METHOD: tuple[str, ...] = (
    "DICOM PS3.15 Annex E basic profile",
    "Retain longitudinal temporal information, modified dates",
    "Retain patient characteristics",
    "Clean descriptors",
    "Private elements removed, UIDs remapped",
)
# De-identification Method Code Sequence: (code value, meaning), coding scheme DCM (PS3.16 CID 7050).
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113105", "Clean Descriptors Option"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)

_MIN_SECRET_BYTES = 16
_MAX_DATE_SHIFT_DAYS = 365
_PSEUDONYM_PREFIX = "P-"
_PSEUDONYM_LENGTH = 8
# Crockford's base 32: digits and capitals without I, L, O and U, which read as 1, 1, 0 and V.
_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PSEUDONYM_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DICOM_ROOT = "1.2.840.10008."
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

_PSEUDONYMISED = frozenset({"PatientName", "PatientID"})
_EMPTIED_TYPE_2 = frozenset({"PatientBirthDate", "AccessionNumber", "ReferringPhysicianName", "StudyID"})
_CLEANED_DESCRIPTORS = frozenset({"StudyDescription", "SeriesDescription", "ProtocolName"})
_KEPT_UID_KEYWORDS = frozenset({"TransferSyntaxUID", "CodingSchemeUID"})
_REMOVED_VRS = frozenset({"PN", "LT", "ST", "UT", "AE", "UN"})
_REMOVED_KEYWORDS = frozenset(
    {
        "PatientBirthTime",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientMotherBirthName",
        "MilitaryRank",
        "BranchOfService",
        "MedicalRecordLocator",
        "EthnicGroup",
        "EthnicGroupCodeSequence",
        "Occupation",
        "PatientReligiousPreference",
        "PatientInsurancePlanCodeSequence",
        "PatientPrimaryLanguageCodeSequence",
        "PatientPrimaryLanguageModifierCodeSequence",
        "CountryOfResidence",
        "RegionOfResidence",
        "CurrentPatientLocation",
        "ReferencedPatientSequence",
        "ReferencedPatientPhotoSequence",
        "ResponsiblePersonRole",
        "ResponsibleOrganization",
        "MedicalAlerts",
        "Allergies",
        "SpecialNeeds",
        "PatientState",
        "AdmittingDiagnosesCodeSequence",
        "DeviceSerialNumber",
        "DeviceUID",
        "TimezoneOffsetFromUTC",
        "RequestAttributesSequence",
        "ReasonForStudy",
        "ReasonForTheRequestedProcedure",
        "RequestedProcedureLocation",
        "RequestingService",
        "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest",
        "PerformedLocation",
        "OrderEnteredBy",
        "OrderEntererLocation",
        "OrderCallbackPhoneNumber",
        "AuthorObserverSequence",
        "ParticipantSequence",
        "PersonIdentificationCodeSequence",
        "VerifyingOrganization",
        "HumanPerformerOrganization",
        "HumanPerformerCodeSequence",
        "ContentSequence",
        "AcquisitionContextSequence",
        "OriginalAttributesSequence",
        "ModifiedAttributesSequence",
        "DigitalSignaturesSequence",
        "MACParametersSequence",
        "EncryptedAttributesSequence",
        "IconImageSequence",
        "EncapsulatedDocument",
        "DataSetTrailingPadding",
        "TopicTitle",
        "TopicSubject",
        "TopicAuthor",
        "TopicKeywords",
        "StorageMediaFileSetUID",
        # The rest of PS3.15 Table E.1-1 that the rules by VR and keyword part do not reach
        # (tests/privacy fills every attribute of the table and checks that none survives).
        "CertificateOfSigner",
        "CertifiedTimestamp",
        "ContrastBolusAgent",
        "EntityName",
        "FrameOriginTimestamp",
        "InstanceOriginStatus",
        "InsurancePlanIdentification",
        "LensMake",
        "LensModel",
        "LensSpecification",
        "MAC",
        "MakerNote",
        "ModifyingSystem",
        "NonconformingDataElementValue",
        "PatientSexNeutered",
        "PatientTransportArrangements",
        "PositionAcquisitionTemplateName",
        "PreMedication",
        "PregnancyStatus",
        "ROIName",
        "RTPlanName",
        "ReasonForTheAttributeModification",
        "ReasonForTheImagingServiceRequest",
        "RequestedContrastAgent",
        "ScheduledProcedureStepLocation",
        "ScheduledStudyLocation",
        "SmokingStatus",
        "SourceManufacturer",
        "SourceOfPreviousValues",
        "SpecimenAccessionNumber",
        "StructureSetName",
        "TextString",
        "TreatmentMachineName",
        "TreatmentSite",
        "TreatmentSites",
    }
)
# A keyword containing any of these names something about a person, a place or free text.
_REMOVED_KEYWORD_PARTS = (
    "Address",
    "Telephone",
    "Telecom",
    "Institution",
    "Physician",
    "Operator",
    "Station",
    "Comment",
    "ClinicalTrial",
    "Issuer",
    "Label",
    "Identifier",
    "SerialNumber",
    "Selector",
)
#: UIDs whose keyword ends in "ClassUID" but that name one device, not a kind of thing: remapped.
_INSTANCE_CLASS_UIDS = frozenset({"ManufacturerDeviceClassUID"})
_META_REMOVED = (
    "SourceApplicationEntityTitle",
    "SendingApplicationEntityTitle",
    "ReceivingApplicationEntityTitle",
    "PrivateInformationCreatorUID",
    "PrivateInformation",
)

_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DATE_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})([0-9.]*)([+-]\d{4})?$")
_AGE = re.compile(r"^(\d{3})([DWMY])$")
_MAX_AGE_YEARS = 90


class Deidentifier:
    """Pseudonyms, UID remapping, date shifts and DICOM de-identification under one secret.

    Parameters
    ----------
    secret
        The library's random secret, at least 16 bytes (e.g. ``secrets.token_bytes(32)``),
        stored with the library and never in it. The same secret gives the same pseudonyms,
        UIDs and date shifts; another secret gives unrelated ones.

    Examples
    --------
    >>> deid = Deidentifier(bytes(range(32)))
    >>> pseudonym = deid.pseudonym("upload", "MRN-0001")
    >>> clean = deid.deidentify_bytes(dicom_file_bytes, pseudonym)  # doctest: +SKIP
    """

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError(f"secret must be bytes, got {type(secret).__name__}")
        if len(secret) < _MIN_SECRET_BYTES:
            raise ValueError(f"secret must be at least {_MIN_SECRET_BYTES} random bytes, got {len(secret)}")
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        return "Deidentifier(secret=<hidden>)"

    def _mac(self, message: str) -> bytes:
        return hmac.new(self._secret, message.encode("utf-8"), hashlib.sha256).digest()

    # ----------------------------------------------------------------------------------------
    # Keyed values

    def pseudonym(self, source: str, patient_id: str) -> str:
        """The pseudonym of patient ``patient_id`` of ``source`` (e.g. a dataset or hospital name):
        ``"P-"`` and 8 characters of Crockford base 32 taken from a keyed HMAC-SHA256.

        Leading and trailing spaces are ignored (DICOM pads values with them).
        """
        source, patient_id = str(source).strip(), str(patient_id).strip()
        if not patient_id:
            raise ValueError("patient_id must not be empty")
        # The source's length keeps ("ab", "c") and ("a", "bc") apart.
        digest = self._mac(f"pseudonym:{len(source)}:{source}:{patient_id}")
        bits = int.from_bytes(digest[:5], "big")  # 40 bits = 8 characters of 5 bits
        chars = (_BASE32[(bits >> shift) & 31] for shift in range(35, -1, -5))
        return _PSEUDONYM_PREFIX + "".join(chars)

    def uid(self, original_uid: str) -> str:
        """The UID that replaces ``original_uid``: ``2.25.`` and the decimal value of the first
        16 bytes of HMAC-SHA256(secret, ``"uid:" + original``); at most 44 characters."""
        digest = self._mac("uid:" + str(original_uid).strip().rstrip("\x00"))
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def date_shift_days(self, pseudonym: str) -> int:
        """The patient's date shift in days, in [-365, -1]: every date of the patient moves by it."""
        digest = self._mac("date-shift:" + pseudonym)
        return -1 - int.from_bytes(digest[:8], "big") % _MAX_DATE_SHIFT_DAYS

    # ----------------------------------------------------------------------------------------
    # Datasets and files

    def deidentify(self, ds: Dataset, pseudonym: str) -> Dataset:
        """De-identify ``ds`` in place (see the module's docstring for the rules) and return it.

        The pixel data is not touched: text burned into the pixels is not removed.
        """
        _check_pseudonym(pseudonym)
        tokens = identifying_tokens(ds)
        ds.remove_private_tags()
        self._clean(ds, pseudonym, self.date_shift_days(pseudonym), tokens, top_level=True)
        file_meta = getattr(ds, "file_meta", None)
        if file_meta is not None:
            self._clean_file_meta(file_meta)

        ds.PatientName = pseudonym
        ds.PatientID = pseudonym
        ds.PatientBirthDate = ""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = list(DEIDENTIFICATION_METHOD)
        ds.DeidentificationMethodCodeSequence = [_code_item(value, meaning) for value, meaning in _METHOD_CODES]
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
        if getattr(ds, "preamble", None):  # free for applications to fill, e.g. with a TIFF header
            ds.preamble = bytes(128)
        return ds

    def deidentify_bytes(self, data: bytes, pseudonym: str) -> bytes:
        """Read a DICOM file, de-identify it and write it again, with the same transfer syntax and
        the same pixel data bytes.

        Raises
        ------
        InvalidInputError
            Empty input or input that is not DICOM.
        UnsupportedDicomError
            A DICOM file that cannot be read (truncated, damaged), a DICOMDIR, or one that
            cannot be written back.
        """
        _check_pseudonym(pseudonym)
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise InvalidInputError("The file could not be read: expected its contents as bytes.")
        if not data:
            raise InvalidInputError("The file is empty (0 bytes).")
        if data[:4] == b"DICM":  # "DICM" without the 128-byte preamble
            data = bytes(128) + data
        bare = data[128:132] != b"DICM"
        if bare and not _looks_like_bare_dataset(data):
            raise InvalidInputError("The file is not a DICOM file.")
        try:
            ds = pydicom.dcmread(BytesIO(data), force=bare)
            is_dicom = not bare or "SOPClassUID" in ds or "PixelData" in ds
        except Exception as e:
            if bare:
                raise InvalidInputError("The file is not a DICOM file.") from e
            raise UnsupportedDicomError("The DICOM file could not be read; it may be truncated or damaged.") from e
        if not is_dicom:
            raise InvalidInputError("The file is not a DICOM file.")

        try:
            file_meta = getattr(ds, "file_meta", None)
            media_class = file_meta.get("MediaStorageSOPClassUID") if file_meta is not None else None
            if media_class == pydicom.uid.MediaStorageDirectoryStorage:
                raise UnsupportedDicomError(
                    "The file is a DICOMDIR, an index of other files without images of its own; "
                    "add the image files themselves."
                )
            if _is_cut_short(ds):
                raise UnsupportedDicomError("The DICOM file is incomplete (its image data is missing or cut short).")
            if bare:
                _add_file_meta(ds)
            self.deidentify(ds, pseudonym)
            buffer = BytesIO()
            pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        except DashboardError:
            raise
        except Exception as e:
            raise UnsupportedDicomError(
                "The DICOM file could not be de-identified; it may be damaged or lack required information."
            ) from e
        return buffer.getvalue()

    # ----------------------------------------------------------------------------------------
    # The walk

    def _clean(
        self, ds: Dataset, pseudonym: str, shift_days: int, tokens: IdentifyingTokens, *, top_level: bool
    ) -> None:
        for tag in list(ds.keys()):
            elem = ds[tag]
            keyword, vr = elem.keyword, elem.VR
            if keyword in _PSEUDONYMISED:
                elem.value = pseudonym
            elif keyword in _EMPTIED_TYPE_2:
                if top_level:
                    elem.value = ""
                else:
                    del ds[tag]
            elif _is_removed(tag, keyword, vr):
                del ds[tag]
            elif keyword in _CLEANED_DESCRIPTORS:
                if tokens.found_in(element_strings(elem.value)):
                    del ds[tag]
            elif vr == "SQ":
                for item in elem.value:
                    self._clean(item, pseudonym, shift_days, tokens, top_level=False)
            elif vr == "UI":
                if not _keeps_uid(keyword, element_strings(elem.value)):
                    elem.value = _one_or_many([self.uid(v) if v else v for v in element_strings(elem.value)])
            elif vr in ("DA", "DT"):
                shift = _shift_date if vr == "DA" else _shift_date_time
                shifted = [shift(v, shift_days) for v in element_strings(elem.value)]
                if any(v is None for v in shifted):
                    del ds[tag]
                else:
                    elem.value = _one_or_many(shifted)
            elif vr == "AS":
                age = _capped_age(str(elem.value or ""))
                if age is None:
                    del ds[tag]
                else:
                    elem.value = age

    def _clean_file_meta(self, file_meta: FileMetaDataset) -> None:
        for keyword in _META_REMOVED:
            if keyword in file_meta:
                delattr(file_meta, keyword)
        instance = str(file_meta.get("MediaStorageSOPInstanceUID") or "")
        if instance and not instance.startswith(_DICOM_ROOT):
            file_meta.MediaStorageSOPInstanceUID = self.uid(instance)
        # The file is now written by pydicom: its implementation, not the original one.
        file_meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
        file_meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"


# --------------------------------------------------------------------------------------------
# Rules


def _is_removed(tag: BaseTag, keyword: str, vr: str) -> bool:
    if 0x5000 <= tag.group <= 0x50FF or 0x6000 <= tag.group <= 0x60FF:  # curves, overlays
        return True
    if not keyword or vr in _REMOVED_VRS or keyword in _REMOVED_KEYWORDS:
        return True
    if any(part in keyword for part in _REMOVED_KEYWORD_PARTS) or keyword.startswith("GPS"):
        return True
    if vr != "UI" and keyword.endswith(("ID", "IDs")):
        return True
    return keyword.endswith("Description") and keyword not in _CLEANED_DESCRIPTORS


def _check_pseudonym(pseudonym: str) -> None:
    if not isinstance(pseudonym, str) or not _PSEUDONYM_PATTERN.match(pseudonym):
        raise ValueError("pseudonym must be 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit")


def _keeps_uid(keyword: str, values: list[str]) -> bool:
    """Whether a UI element names a kind of thing (kept) rather than an instance (remapped)."""
    if (keyword.endswith("ClassUID") and keyword not in _INSTANCE_CLASS_UIDS) or keyword in _KEPT_UID_KEYWORDS:
        return True
    return all(not v or v.startswith(_DICOM_ROOT) for v in values)


def _shift_date(value: str, days: int) -> str | None:
    """A DA value moved by ``days``; "" stays ""; None when malformed."""
    value = value.strip()
    if not value:
        return ""
    match = _DATE.match(value)
    if match is None:
        return None
    return _moved(match, days)


def _shift_date_time(value: str, days: int) -> str | None:
    """A DT value whose date part is moved by ``days`` (time and UTC offset kept); None when
    malformed or without a full date."""
    value = value.strip()
    if not value:
        return ""
    match = _DATE_TIME.match(value)
    if match is None:
        return None
    date = _moved(match, days)
    return None if date is None else date + match.group(4) + (match.group(5) or "")


def _moved(match: re.Match[str], days: int) -> str | None:
    try:
        date = datetime.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        return (date + datetime.timedelta(days=days)).strftime("%Y%m%d")
    except (ValueError, OverflowError):  # 20230231, or before year 1
        return None


def _capped_age(value: str) -> str | None:
    value = value.strip()
    if not value:
        return ""
    match = _AGE.match(value)
    if match is None:
        return None
    if match.group(2) == "Y" and int(match.group(1)) >= _MAX_AGE_YEARS:
        return f"{_MAX_AGE_YEARS:03d}Y"
    return value


def _one_or_many(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _looks_like_bare_dataset(data: bytes) -> bool:
    """A dataset without preamble nor meta header starts with a tag of group 0002 or 0008."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def _is_cut_short(ds: Dataset) -> bool:
    """Whether an image's pixel data is missing or shorter than its header says (a truncated
    file: pydicom reads what is there without complaint)."""
    if not any(k in ds for k in _PIXEL_DATA_KEYWORDS):
        sop_class = ds.get("SOPClassUID")
        return "Rows" in ds or "Image Storage" in str(getattr(sop_class, "name", ""))
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if "PixelData" not in ds or ds["PixelData"].is_undefined_length or (tsyntax and tsyntax.is_compressed):
        return False
    try:
        expected = get_expected_length(ds, unit="bytes")
    except (AttributeError, KeyError, TypeError, ValueError):  # header too incomplete to say
        return False
    return len(ds.PixelData) < expected


def _add_file_meta(ds: Dataset) -> None:
    """File meta for a bare dataset, keeping the encoding it was read with."""
    implicit_vr, little_endian = ds.original_encoding
    if implicit_vr:
        tsyntax = pydicom.uid.ImplicitVRLittleEndian
    else:
        tsyntax = pydicom.uid.ExplicitVRLittleEndian if little_endian else pydicom.uid.ExplicitVRBigEndian
    file_meta = FileMetaDataset()
    file_meta.TransferSyntaxUID = tsyntax
    ds.file_meta = file_meta
