"""``sms-flow completion bash|zsh``: a script that loads in the shell and completes commands,
options, option values and the chart's states."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SMS_FLOW_COMMAND, Spawner

# Completes each line as bash would at its end; prints "line => candidates".
_COMPLETE = """
source <("$@" completion bash) || exit 9
for line in "sms-flow hi" "sms-flow history --ou" "sms-flow history --outcome con" \\
            "sms-flow history --format " "sms-flow diagram --format m" \\
            "sms-flow check SYNCING/sy" "sms-flow status --j"; do
    read -ra COMP_WORDS <<< "$line"
    [[ "$line" == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _sms_flow
    echo "$line => ${COMPREPLY[*]}"
done
complete -p sms-flow
"""


def test_the_bash_script_loads_and_completes(spawn: Spawner, tmp_path: Path) -> None:
    done = spawn.run("bash", "-c", _COMPLETE, "bash", *SMS_FLOW_COMMAND, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    shown = dict(line.split(" => ") for line in done.stdout.splitlines() if " => " in line)
    assert shown == {
        "sms-flow hi": "history",
        "sms-flow history --ou": "--outcome",
        "sms-flow history --outcome con": "conflict",
        "sms-flow history --format ": "table csv json",
        "sms-flow diagram --format m": "mermaid markdown",
        "sms-flow check SYNCING/sy": "SYNCING/syncing",
        "sms-flow status --j": "--journal --json",
    }
    assert "complete -o default -F _sms_flow sms-flow" in done.stdout
