"""Summarizes an Autobahn|Testsuite fuzzingclient report for docs/conformance/.

    python3 conformance/summarize.py REPORT_DIR OUT_DIR SECONDS

REPORT_DIR holds one directory per agent with wstest's index.json (and its HTML,
which is not kept). OUT_DIR
gets index.json (every case's verdict per agent, with no timings, so that it
changes only when a verdict does) and README.md (counts per category). Exits
1 when any case FAILED, in its behaviour or in how the connection closed.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# Verdicts in the order the tables show them.
VERDICTS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]

CATEGORIES = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/performance",
    "10": "Misc",
    "12": "WebSocket compression (different payloads)",
    "13": "WebSocket compression (different parameters)",
}


def case_key(case: str) -> list[int]:
    return [int(part) for part in case.split(".")]


def failed(result: dict) -> bool:
    # behaviorClose "FAILED BY CLIENT": the client had to drop the TCP
    # connection the server should have closed.
    return result["behavior"] == "FAILED" or result["behaviorClose"].startswith("FAILED")


def summarize(report: dict, seconds: float) -> tuple[dict, str, int]:
    agents = {}
    lines = [
        "# WebSocket conformance: Autobahn|Testsuite",
        "",
        "Written by `make conformance` (`conformance/run.sh`): the Autobahn|Testsuite",
        "fuzzingclient, cases 1-10, 12 and 13, against two WebSocket echoes served by",
        "Vivarium, a raw ASGI app and a Starlette app, one wstest per app at once.",
        "`index.json` has every case's verdict; wstest's HTML report stays in",
        "`conformance/.work/report/`. Time is the sum of the cases' durations.",
        "",
        f"Run time of `conformance/run.sh`, venvs and build included: {seconds:.0f} s.",
        "",
    ]
    total_failed = 0
    for agent in sorted(report):
        cases = report[agent]
        per: dict[str, Counter] = {}
        duration: Counter = Counter()
        verdicts = {}
        for case in sorted(cases, key=case_key):
            r = cases[case]
            category = case.split(".")[0]
            verdict = "FAILED" if failed(r) else r["behavior"]
            per.setdefault(category, Counter())[verdict] += 1
            duration[category] += r.get("duration", 0)
            verdicts[case] = {
                "behavior": r["behavior"],
                "close": r["behaviorClose"],
                "remote_close_code": r.get("remoteCloseCode"),
            }
        n_failed = sum(c["FAILED"] for c in per.values())
        total_failed += n_failed
        agents[agent] = {
            "failed": n_failed,
            "by_category": {k: dict(per[k]) for k in sorted(per, key=int)},
            "cases": verdicts,
        }
        lines += [
            f"## {agent}",
            "",
            "| Category | " + " | ".join(VERDICTS) + " | Time (s) |",
            "| --- | " + " | ".join("---:" for _ in VERDICTS) + " | ---: |",
        ]
        for category in sorted(per, key=int):
            counts = per[category]
            name = CATEGORIES.get(category, "")
            lines.append(
                f"| {category} {name} | "
                + " | ".join(str(counts[v]) if counts[v] else "" for v in VERDICTS)
                + f" | {duration[category] / 1000:.1f} |"
            )
        bad = [case for case in verdicts if failed(cases[case])]
        lines += ["", f"FAILED: {', '.join(bad) if bad else 'none'}.", ""]
    summary = {"suite": "autobahntestsuite", "failed": total_failed, "agents": agents}
    return summary, "\n".join(lines), total_failed


def main() -> int:
    report_dir, out_dir, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    report: dict = {}
    for index in sorted(report_dir.glob("*/index.json")):
        report.update(json.loads(index.read_text()))
    if not report:
        print(f"conformance: no index.json under {report_dir}", file=sys.stderr)
        return 1
    summary, markdown, n_failed = summarize(report, seconds)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "index.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (out_dir / "README.md").write_text(markdown)
    for agent, data in summary["agents"].items():
        print(f"conformance: {agent}: " + ", ".join(
            f"{cat}: {dict(counts)}" for cat, counts in data["by_category"].items()))
    if n_failed:
        print(f"conformance: {n_failed} FAILED; see {out_dir}/README.md", file=sys.stderr)
        return 1
    print("conformance: 0 FAILED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
