import subprocess
import sys

from robench.cli import main


def test_user_error_is_one_line_exit_2(capsys):
    rc = main(["train", "stgnc"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "did you mean 'stgcn'" in err


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "robench.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "train" in out.stdout
