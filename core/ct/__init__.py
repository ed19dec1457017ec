"""Chest CT: windowing and model inputs (``preprocess``), the analysis the page and the CLI run
(``analysis``), and slices and projections for display (``views``)."""
