"""From cameras to the gallery: decode a video file or stream, detect people, track them within the
camera, pick a few good crops per track and send them to the service (or to a folder).

    source (sources.py) -> frames -> detector (detectors/) -> boxes -> tracker (tracking.py)
      -> tracks -> crop selection (crops.py) -> client (client.py: POST /gallery) | folder (dry run)

`pipeline.py` ties the steps together, `evaluation.py` scores tracks against ground truth
(motmetrics), `cli.py` adds `reid ingest-video`. Dependencies point one way: video -> model (errors
only); video never imports service or training.
"""
