"""Talking to a hospital archive (PACS): find studies and series, retrieve a series into memory,
and send the dashboard's results back as DICOM. Both DIMSE (pynetdicom) and DICOMweb
(dicomweb-client) are supported; :mod:`core.pacs.settings` says which one and where."""
