"""The inference layer: person boxes -> poses -> rescoring/NMS -> COCO results and metrics."""
