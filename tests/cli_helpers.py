"""What every `pvp` command test checks of a refusal: non-zero exit, one line, the words that matter."""

from pvp_runtime.cli.main import main


def fails(capsys, argv, *words) -> str:
    """Run ``pvp argv``; it must fail with one ``pvp: error:`` line containing every word."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("pvp: error: ") and "\n" not in err, err
    for word in words:
        assert word in err, err
    return err
