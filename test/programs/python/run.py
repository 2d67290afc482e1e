"""Runs examples/python-node's program inline through Pulumi's Automation API for Python (the
Python language host is not on this machine; the Automation API serves an inline program itself),
with the CLI and espm's provider plugin found as the environment says. Usage:

    run.py up|destroy WORKDIR   (configuration as JSON on stdin for up)

Prints one JSON line: the result, the summary's resource changes and the outputs (secrets shown,
for the test to check).
"""
import json
import os
import sys

from pulumi import automation as auto

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../examples/python-node"))
from espm_node import program  # noqa: E402


def stack(workdir: str) -> auto.Stack:
    return auto.create_or_select_stack(
        stack_name="test",
        project_name="espm-python-node",
        program=program,
        opts=auto.LocalWorkspaceOptions(
            work_dir=workdir,
            pulumi_home=os.environ["PULUMI_HOME"],
            pulumi_command=auto.PulumiCommand(root=os.environ["ESPM_PULUMI_ROOT"]),
            project_settings=auto.ProjectSettings(
                name="espm-python-node",
                runtime="python",
                backend=auto.ProjectBackend(url=os.environ["PULUMI_BACKEND_URL"]),
            ),
            secrets_provider="passphrase",
        ),
    )


def main() -> None:
    command, workdir = sys.argv[1], sys.argv[2]
    s = stack(workdir)
    if command == "up":
        config = json.load(sys.stdin)
        s.set_all_config({key: auto.ConfigValue(value=v["value"], secret=v.get("secret", False)) for key, v in config.items()})
        result = s.up(on_output=lambda line: print(line, file=sys.stderr))
        outputs = {key: value.value for key, value in result.outputs.items()}
        print(json.dumps({"result": result.summary.result, "changes": result.summary.resource_changes, "outputs": outputs}))
    elif command == "destroy":
        result = s.destroy(on_output=lambda line: print(line, file=sys.stderr))
        print(json.dumps({"result": result.summary.result, "changes": result.summary.resource_changes}))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
