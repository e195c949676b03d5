"""``okspose eval-results``: COCO keypoint AP/AR of a results file against an annotation file (pycocotools),
or CrowdPose's metric against a CrowdPose file. Imports no torch: evaluating a results file needs none."""

from __future__ import annotations

import argparse
import json
import sys

from okspose.data.records import SkipReport
from okspose.evaluation import evaluate_keypoints, format_stats
from okspose.keypoints import get_schema


def run(args: argparse.Namespace) -> int:
    report = SkipReport()
    schema = get_schema(args.schema)
    stats = evaluate_keypoints(args.gt, args.results, sigmas=schema.sigmas, area=args.area, report=report,
                               joints=schema.joints)
    if report.total:
        print(f"{args.gt}: {report.summary()}", file=sys.stderr)
    print(json.dumps(stats) if args.json else format_stats(stats))
    return 0
