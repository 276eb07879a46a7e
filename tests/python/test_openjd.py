"""Open Job Description templates through the Python client, on the real binaries."""

import os

import pytest

import farmhand

CLUSTER_EXTRA_YAML = (
    "openjd:\n  enabled: true\n  executables: [bash]\n"
    + ("  allow_root: true\n" if os.geteuid() == 0 else "")
)

TEMPLATE = """specificationVersion: jobtemplate-2023-09
name: Py {{Param.Shot}}
parameterDefinitions:
  - name: Shot
    type: STRING
  - name: Out
    type: PATH
steps:
  - name: Render
    parameterSpace:
      taskParameterDefinitions:
        - name: Frame
          type: INT
          range: "1-3"
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "echo {{Task.Param.Frame}} >> {{Param.Out}}/frames"]
  - name: Encode
    dependencies:
      - dependsOn: Render
    script:
      actions:
        onRun:
          command: bash
          args: ["-c", "sort {{Param.Out}}/frames | tr '\\\\n' ' ' > {{Param.Out}}/encoded"]
"""


def test_a_template_becomes_a_job_per_step_and_runs(client, tmp_path):
    template = tmp_path / "shot.yaml"
    template.write_text(TEMPLATE)
    made = client.submit_openjd(template, {"Shot": "sh010", "Out": str(tmp_path)},
                                idempotency_key="py-openjd-1")
    assert made.job_name == "Py sh010"
    assert [step for step, _ in made.steps] == ["Render", "Encode"]
    assert made.jobs["Render"].task_count == 3
    assert not made.duplicate
    for _, job in made.steps:
        assert client.wait(job, timeout=120).state == "succeeded"
    assert (tmp_path / "encoded").read_text() == "1 2 3 "
    again = client.submit_openjd(template, {"Shot": "sh010", "Out": str(tmp_path)},
                                 idempotency_key="py-openjd-1")
    assert again.duplicate
    assert again.jobs == made.jobs


def test_a_bad_value_is_one_line_and_makes_no_job(client, tmp_path):
    template = tmp_path / "shot.yaml"
    template.write_text(TEMPLATE)
    with pytest.raises(farmhand.InvalidArgument) as refused:
        client.submit_openjd(template, {"Out": str(tmp_path)})
    assert "Shot" in str(refused.value)
    assert "\n" not in str(refused.value)
