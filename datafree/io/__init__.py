"""What a run reads and writes on disk: weights as safetensors and their checks (``checkpoint``), the loop's resumable
state (``trainstate``), the metrics lines and best / last weights every loop writes (``runlog``), benchmark figures
with their provenance (``results``) and image grids and plots (``viz``). Nothing here unpickles."""
