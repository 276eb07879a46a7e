"""Publishes through the Python client against the real farmhandd: a rule turns
the Beachball EXR sequence into a thumbnail, JPEG proxies and a review movie
made after the proxies; the same event id twice gives one set of jobs.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BEACHBALL, REPO, image_size, video_frames

EXAMPLE = REPO / "python" / "examples" / "publish_hook.py"

# Read by the `cluster` fixture (conftest.py), appended to its config with
# @WORK_DIR@ replaced by the cluster's directory. The broker takes a {meta.KEY}
# value only as a path component (no '/', not "." or ".."), so that a publish
# cannot write anywhere it likes: meta.out names a folder under a root the
# config fixes.
CLUSTER_EXTRA_YAML = r"""
rules:
  - name: review
    match: { path: "*.exr", kind: sequence }
    jobs:
      thumb: { kind: thumbnail, output: "@WORK_DIR@/{meta.out}/thumbs/{name}.jpg", size: 256x0 }
      proxies:
        kind: convert
        output: "@WORK_DIR@/{meta.out}/proxy/{name}.{frame}.jpg"
        resize: 50%
        format: jpg
        chunk: 4
      movie:
        kind: transcode
        output: "@WORK_DIR@/{meta.out}/review/{name}.mov"
        codec: h264
        after: [proxies]
"""

FRAMES = 8


@pytest.fixture(autouse=True)
def beachball():
    if not Path(str(BEACHBALL).replace("####", "0001")).exists():
        pytest.fail("test data missing: %s" % BEACHBALL)


def files_under(path):
    return sorted(p for p in Path(path).rglob("*") if p.is_file())


def test_a_publish_makes_the_thumbnail_proxies_and_movie_its_rule_says(cluster, client):
    out = cluster.path("publish-1")
    result = client.publish(
        str(BEACHBALL),
        meta={"out": out.name, "project": "show", "shot": "bb010", "version": "1"},
        event_id="show/bb010/comp/v001",
    )
    assert result.event_id == "show/bb010/comp/v001"
    assert result.duplicate is False
    assert result.rules == ["review"]
    assert len(result.job_ids) == 3, result
    assert result.warnings == []

    statuses = [client.wait(job, timeout=300) for job in result.job_ids]
    for status in statuses:
        assert status.state == "succeeded", status
        assert status.event_id == result.event_id
    by_kind = {s.kind: s for s in statuses}
    assert set(by_kind) == {"thumbnail", "convert", "transcode"}
    # The movie waits for the proxies (after: [proxies]).
    assert by_kind["convert"].id in by_kind["transcode"].after
    assert by_kind["convert"].chunk == 4 and by_kind["convert"].task_count == 2

    thumbs = files_under(out / "thumbs")
    assert len(thumbs) == 1 and thumbs[0].suffix == ".jpg", thumbs
    assert image_size(thumbs[0]) in ("256x195", "256x194")

    proxies = files_under(out / "proxy")
    assert len(proxies) == FRAMES, proxies
    assert all(p.suffix == ".jpg" for p in proxies)
    assert {image_size(p) for p in proxies} == {"1024x778"}

    movies = files_under(out / "review")
    assert len(movies) == 1 and movies[0].suffix == ".mov", movies
    assert video_frames(movies[0]) == FRAMES

    events = client.events(event_id=result.event_id)
    assert len(events) == 1
    assert events[0].job_ids == result.job_ids
    # Every job was waited for above: the event shows them all succeeded.
    assert events[0].job_states == ["succeeded"] * len(result.job_ids)
    assert events[0].meta["shot"] == "bb010"
    assert events[0].source == "python"
    assert events[0].path.endswith("Beachball/singlepart.####.exr"), events[0].path


def test_the_same_event_id_twice_creates_one_set_of_jobs(cluster, client):
    out = cluster.path("publish-2")
    meta = {"out": out.name, "project": "show", "shot": "bb020", "version": "2"}
    first = client.publish(str(BEACHBALL), meta=meta, event_id="show/bb020/comp/v002")
    assert first.duplicate is False and len(first.job_ids) == 3
    jobs_before = len(client.jobs())

    again = client.publish(str(BEACHBALL), meta=meta, event_id="show/bb020/comp/v002")
    assert again.duplicate is True
    assert again.event_id == first.event_id
    assert again.job_ids == first.job_ids
    assert len(client.jobs()) == jobs_before
    assert len(client.events(event_id=first.event_id)) == 1

    for job in first.job_ids:
        assert client.wait(job, timeout=300).state == "succeeded"


def test_a_publish_no_rule_matches_creates_no_jobs(cluster, client):
    notes = cluster.path("notes.txt")
    notes.write_text("not an image\n")
    jobs_before = len(client.jobs())
    result = client.publish(str(notes), meta={"out": "x"},
                            event_id="show/notes/v001")
    assert result.job_ids == [] and result.rules == []
    assert len(client.jobs()) == jobs_before


def test_the_example_hook_publishes_once_and_recognises_a_rerun(cluster):
    out = cluster.path("publish-hook")
    args = [sys.executable, str(EXAMPLE), str(BEACHBALL), "--project", "show", "--shot", "bb030",
            "--task", "comp", "--version", "7", "--meta", "out=%s" % out.name,
            "--broker", cluster.endpoint, "--wait"]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first
    assert first.stdout.startswith("published show/bb030/comp/v007: jobs "), first.stdout
    assert len(files_under(out / "proxy")) == FRAMES

    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again
    assert again.stdout.replace("already published", "published") == first.stdout
