"""Case reports as the pages show a case: the X-ray page's radiograph, the CT page's series and
the Survival page's library patient, each assembled into a :class:`core.report.CaseReport`
(which :mod:`core.report` writes as one offline HTML file).

Builders take what a page has already computed (images, maps, predictions, analyses) and copy
nothing to disk; they read no Streamlit state, so a page can run them on a download's own thread.
Reports name a case by a pseudonym (a hash of the uploaded bytes, or the library's pseudonym),
never by a file name; DICOM identifiers go in only when the caller asks for them.
"""
