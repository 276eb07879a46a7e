#!/usr/bin/python3
"""An example publish hook: tell farmhand that a render was published.

This is what a Nuke, Houdini or Maya publish step calls once the files are on
disk. farmhand's rules (the `rules:` of farmhand.yaml) then make the thumbnail,
the proxies and the review movie. From Python inside a DCC:

    import farmhand
    farmhand.Client().publish(path, meta={...}, event_id="show/sh010/comp/v003")

From the command line:

    publish_hook.py /show/sh010/comp/v003/sh010_comp_v003.####.exr \\
        --project show --shot sh010 --task comp --version 3 --meta user=ana

The event id is made from project/shot/task/version, so publishing the same
version again (a re-run hook, a retry after a network blip) is recognised by the
broker as a duplicate and creates no second set of jobs.

Exit codes: 0 published (or already published), 1 refused by the broker (the
reason on stderr, one line), 2 bad arguments, 3 broker unreachable.
"""

import argparse
import json
import os
import sys

import farmhand

PROG = "publish_hook"


def event_id_for(project, shot, task, version):
    """A deterministic event id: the same publish always gets the same id."""
    return "%s/%s/%s/v%03d" % (project, shot, task, version)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description="Publish a render to farmhand (see the module docstring)."
    )
    parser.add_argument("path", help="published sequence (shot.####.exr), file or directory")
    parser.add_argument("--project", required=True)
    parser.add_argument("--shot", required=True)
    parser.add_argument("--task", required=True, help="e.g. comp, lighting, fx")
    parser.add_argument("--version", required=True, type=int, help="version number, e.g. 3")
    parser.add_argument("--user", default=os.environ.get("USER", ""),
                        help="who published (default $USER)")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE",
                        help="more metadata for the rules, e.g. dept=comp (repeatable)")
    parser.add_argument("--event-id", help="override the id made from project/shot/task/version")
    parser.add_argument("--broker", help="broker endpoint (default $FARMHAND_BROKER, else "
                                         "tcp://127.0.0.1:7600)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for the broker")
    parser.add_argument("--wait", action="store_true",
                        help="wait until every job the publish created is finished")
    parser.add_argument("--json", action="store_true", help="print the reply as JSON")
    args = parser.parse_args(argv)
    meta = {}
    for pair in args.meta:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser.error("--meta expects KEY=VALUE, got %r" % pair)
        meta[key] = value
    args.meta_map = meta
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    meta = {
        "project": args.project,
        "shot": args.shot,
        "task": args.task,
        "version": str(args.version),
    }
    if args.user:
        meta["user"] = args.user
    meta.update(args.meta_map)
    event_id = args.event_id or event_id_for(args.project, args.shot, args.task, args.version)

    try:
        client = farmhand.Client(args.broker, timeout=args.timeout)
        result = client.publish(args.path, meta=meta, event_id=event_id)
        failed = []
        if args.wait:
            for job in result.job_ids:
                status = client.wait(job)
                if not status.succeeded:
                    failed.append("job %d %s%s" % (
                        job, status.state, ": " + status.last_error if status.last_error else ""))
    except farmhand.FarmhandError as error:
        print("%s: %s" % (PROG, error), file=sys.stderr)
        return 3 if isinstance(error, farmhand.Unavailable) else 1

    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        jobs = " ".join(str(j) for j in result.job_ids) or "none"
        what = "already published" if result.duplicate else "published"
        print("%s %s: jobs %s" % (what, result.event_id, jobs))
        for warning in result.warnings:
            print("%s: warning: %s" % (PROG, warning), file=sys.stderr)
    if failed:
        print("%s: %s" % (PROG, failed[0]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
