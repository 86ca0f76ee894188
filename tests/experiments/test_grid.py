import pytest

from ifr.experiments.grid import (
    RunSpec,
    SweepParam,
    check_folder_names_distinct,
    expand_grid,
    parse_param,
    parse_seeds,
    run_name,
    split_values,
    value_folder_text,
)


def test_split_values_keeps_commas_inside_brackets_and_quotes():
    assert split_values("0,0.1, 0.3") == ["0", "0.1", "0.3"]
    assert split_values("[360,480],(480,),'a,b'") == ["[360,480]", "(480,)", "'a,b'"]
    assert split_values("[[1,2],[3]],4") == ["[[1,2],[3]]", "4"]


@pytest.mark.parametrize("text", ["[1,2", "1,2]", "'abc", "[1,2)"])
def test_split_values_rejects_unbalanced(text):
    with pytest.raises(ValueError):
        split_values(text)


def test_parse_param():
    param = parse_param("MODEL.IFR.LAMBDA_E=0,0.1,0.3")
    assert param == SweepParam("MODEL.IFR.LAMBDA_E", ("0", "0.1", "0.3"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("MODEL.IFR.LAMBDA_E", "no '='"),
        ("MODEL.IFR.LAMBDA_E=", "empty"),
        ("=0,1", "key before '=' is empty"),
        ("MODEL.IFR.LAMBDA_E=0,,1", "stray comma"),
        ("MODEL.IFR.LAMBDA_E=0,0", "listed twice"),
        ("INPUT.MIN_SIZE_TRAIN=[360,480", "unclosed"),
    ],
)
def test_parse_param_errors_name_the_argument(text, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_param(text)
    assert text in str(info.value)


def test_parse_seeds():
    assert parse_seeds(5, None) == [0, 1, 2, 3, 4]
    assert parse_seeds(None, "3,1,7") == [3, 1, 7]
    assert parse_seeds(None, None) == [0]
    for num, seed_list in ((0, None), (None, "1,1"), (None, "a"), (2, "1")):
        with pytest.raises(ValueError):
            parse_seeds(num, seed_list)


def test_expand_grid_is_the_cartesian_product_with_seeds_innermost():
    params = [SweepParam("A", ("1", "2")), SweepParam("B.C", ("x", "y", "z"))]
    runs = expand_grid(params, [0, 1])
    assert len(runs) == 2 * 3 * 2
    assert runs[0] == RunSpec((("A", "1"), ("B.C", "x")), 0)
    assert runs[1] == RunSpec((("A", "1"), ("B.C", "x")), 1)
    assert runs[2] == RunSpec((("A", "1"), ("B.C", "y")), 0)
    assert runs[-1] == RunSpec((("A", "2"), ("B.C", "z")), 1)
    assert len({r.name for r in runs}) == len(runs)


def test_expand_grid_without_params_repeats_the_seeds():
    runs = expand_grid([], [0, 1, 2])
    assert [r.name for r in runs] == ["seed=0", "seed=1", "seed=2"]


def test_run_folder_names_are_readable_and_filesystem_safe():
    assert run_name((("MODEL.IFR.LAMBDA_E", "0.3"),), 1) == "MODEL.IFR.LAMBDA_E=0.3/seed=1"
    assert run_name((("A", "0.3"), ("B", "[360, 480]")), 0) == "A=0.3/B=360_480/seed=0"
    assert value_folder_text("'../../etc'") == ".._.._etc"
    assert "/" not in value_folder_text("a/b") and value_folder_text("''") == "empty"


def test_values_sharing_a_folder_are_refused():
    with pytest.raises(ValueError, match="share the run folder"):
        check_folder_names_distinct([SweepParam("INPUT.MIN_SIZE_TRAIN", ("[1,2]", "(1,2)"))])
