"""What datafree does to a network, whatever its family: load and check it (``netcheck``), read its features by name
(``features``), record and load its feature statistics (``feature_stats``), fold its BatchNorm (``fold``), count its
FLOPs (``flops``), evaluate it on a test set (``evaluate``); ``spec`` describes the images it takes."""
