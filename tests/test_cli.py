from ecgkit.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_unknown_command_fails(capsys):
    assert main(["frobnicate"]) == 2


def test_dispatches_to_the_module(capsys):
    assert main(["models", "path", "text"]) == 0
    assert "model" in capsys.readouterr().out
