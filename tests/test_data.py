"""microgd.data: tutorial 2's normalisation tables (with its misprints corrected), the scaler's errors,
the built-in datasets and CSV loading."""

import doctest
import json
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import microgd.data
from microgd.data import (
    ConstantColumnError,
    MinMaxScaler,
    ScaleOverflowError,
    load_csv,
    read_text,
    tutorial2_table,
    two_moons,
    xor,
)


def rounded(rows):
    return [[round(v, 4) for v in row] for row in rows]


def test_tutorial2_table():
    X, y = tutorial2_table()
    assert X == [[70, 98], [50, 85], [65, 67], [25, 95]] and y == [91, 82, 80, 68]


def test_tutorial2_zero_one_table():
    X, _ = tutorial2_table()
    table = rounded(MinMaxScaler().fit_transform(X))
    assert table == [[1.0, 1.0], [0.5556, 0.5806], [0.8889, 0.0], [0.0, 0.9032]]
    # The tutorial prints 50 -> 0.5555 and 65 -> 0.8888 (also in its worked formula (65 - 25) / (70 - 25)):
    # truncated, not rounded. 25/45 = 0.55556 and 40/45 = 0.88889.
    assert table[1][0] != 0.5555 and table[2][0] != 0.8888


def test_tutorial2_minus_one_one_table():
    X, _ = tutorial2_table()
    table = rounded(MinMaxScaler((-1, 1)).fit_transform(X))
    assert table == [[1.0, 1.0], [0.1111, 0.1613], [0.7778, -1.0], [-1.0, 0.8065]]
    # The tutorial prints 50 -> -0.1111 (wrong sign: 2 * 25/45 - 1 = +0.1111), 65 -> 0.7777 and
    # 95 -> 0.8064 (truncated: 2 * 40/45 - 1 = 0.77778 and 2 * 28/31 - 1 = 0.80645).
    assert table[1][0] != -0.1111 and table[2][0] != 0.7777 and table[3][1] != 0.8064


def test_the_normalised_targets():
    _, y = tutorial2_table()
    assert [round(v, 4) for v in MinMaxScaler().fit_transform(y)] == [1.0, 0.6087, 0.5217, 0.0]


@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=2), min_size=2, max_size=10),
       st.sampled_from([(0, 1), (-1, 1), (-3.5, 10)]))
def test_scaling_hits_the_range_and_inverts(rows, feature_range):
    assume(all(len({row[j] for row in rows}) > 1 for j in range(2)))  # a constant column is an error (below)
    scaler = MinMaxScaler(feature_range)
    scaled = scaler.fit_transform(rows)
    lo, hi = feature_range
    for j in range(2):
        column = [row[j] for row in scaled]
        assert min(column) == lo and max(column) == pytest.approx(hi, rel=1e-12)
    back = scaler.inverse_transform(scaled)
    for row, original in zip(back, rows):
        assert row == pytest.approx(original, rel=1e-9, abs=1e-6)


def test_transform_uses_the_fitted_range():
    scaler = MinMaxScaler().fit([[0.0, 10.0], [10.0, 20.0]])
    assert scaler.data_min_ == [0.0, 10.0] and scaler.data_max_ == [10.0, 20.0]
    assert scaler.transform([[5.0, 30.0]]) == [[0.5, 2.0]]  # outside the fitted range: extrapolates


@pytest.mark.parametrize("data, message", [
    ([[1.0, 5.0], [2.0, 5.0]], "column 1 is constant .every value is 5.0.; min-max scaling would divide by zero"),
    ([3.0, 3.0], "column 0 is constant"),
    ([[1.0, 2.0], [3.0]], "row 1 has 1 values, expected 2"),
    ([[1.0, 2.0], "ab"], "row 1 is 'ab', expected a list of 2 numbers"),
    ([[1.0, math.nan], [2.0, 3.0]], "row 0 column 1 must be a finite number, got nan"),
    ([[1.0, "x"], [2.0, 3.0]], "row 0 column 1 must be a finite number, got 'x'"),
    ([], "expected a non-empty list"),
])
def test_scaler_errors(data, message):
    with pytest.raises(ValueError, match=message):
        MinMaxScaler().fit(data)


def test_a_constant_column_says_which_and_its_value():
    with pytest.raises(ConstantColumnError) as caught:
        MinMaxScaler().fit([[1.0, 5.0, 0.0], [2.0, 5.0, 0.0]])
    assert (caught.value.column, caught.value.value) == (1, 5.0)  # the first constant column
    with pytest.raises(ConstantColumnError) as caught:
        MinMaxScaler().fit([-2.5, -2.5])
    assert (caught.value.column, caught.value.value) == (0, -2.5)


def test_numbers_a_float_cannot_hold_once_scaled_are_errors_naming_row_and_column():
    """A column spanning -1e308 to 1e308 made nan; a value far outside the fitted range made inf."""
    with pytest.raises(ScaleOverflowError, match=r"fit: column 1: it spans -1e\+308 to 1e\+308, wider than a float "
                                                 r"holds \(max - min overflows\)") as caught:
        MinMaxScaler().fit([[0.0, -1e308], [1.0, 1e308]])
    assert (caught.value.column, caught.value.row) == (1, None)
    scaler = MinMaxScaler((-1, 1)).fit([[0.0, 0.0], [0.5, 1.0]])
    with pytest.raises(ScaleOverflowError, match=r"transform: row 1 column 0: 1e\+308 is inf once scaled, beyond "
                                                 r"the float range \(fitted on \[0.0, 0.5\]\)") as caught:
        scaler.transform([[0.25, 0.5], [1e308, 0.5]])
    assert (caught.value.column, caught.value.row) == (0, 1)
    wide = MinMaxScaler().fit([0.0, 1e300])
    with pytest.raises(ScaleOverflowError, match=r"inverse_transform: row 0 column 0: 10000000000.0 is inf"):
        wide.inverse_transform([1e10])
    with pytest.raises(ValueError, match=r"data_min_\[0\] = -1e\+308 to data_max_\[0\] = 1e\+308 is wider than"):
        MinMaxScaler.from_state({"feature_range": [0, 1], "data_min_": [-1e308], "data_max_": [1e308]})
    with pytest.raises(ValueError, match=r"feature_range \(-1e\+308, 1e\+308\) is wider than a float holds"):
        MinMaxScaler((-1e308, 1e308))


def test_scaler_must_be_fitted_and_fed_matching_rows():
    with pytest.raises(RuntimeError, match="MinMaxScaler.transform: call fit.. first"):
        MinMaxScaler().transform([[1.0]])
    scaler = MinMaxScaler().fit([[0.0, 1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="MinMaxScaler.transform: row 0 has 3 values, expected 2"):
        scaler.transform([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("feature_range", [(1, 1), (2, -2), (0, math.inf), (0,), "01"])
def test_bad_feature_range(feature_range):
    with pytest.raises(ValueError, match="feature_range"):
        MinMaxScaler(feature_range)


def test_xor():
    X, y = xor()
    assert [int(a) ^ int(b) for a, b in X] == y


def test_two_moons_is_seeded_and_shaped():
    X, y = two_moons(101, noise=0.1, seed=3)
    assert len(X) == 101 and y.count(0.0) == 50 and y.count(1.0) == 51
    assert two_moons(101, noise=0.1, seed=3) == (X, y)
    assert two_moons(101, noise=0.1, seed=4)[0] != X


def test_two_moons_without_noise_lies_on_the_two_half_circles():
    X, y = two_moons(40, noise=0.0)
    for (a, b), label in zip(X, y):
        centre = (0.0, 0.0) if label == 0.0 else (1.0, 0.5)
        assert math.hypot(a - centre[0], b - centre[1]) == pytest.approx(1.0, rel=1e-12)
        assert (b >= -1e-12) if label == 0.0 else (b <= 0.5 + 1e-12)


@pytest.mark.parametrize("kwargs, message", [(dict(n=1), "n must be a whole number >= 2"),
                                             (dict(noise=-0.1), "noise must be a finite number >= 0")])
def test_two_moons_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        two_moons(**kwargs)


TABLE_CSV = "x1,  x2,  z\n70,  98,  91\n50,  85,  82\n\n65,  67,  80\n25,  95,  68\n"


def test_load_csv_reads_tutorial2_table(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text(TABLE_CSV)
    header, rows = load_csv(path)
    assert header == ["x1", "x2", "z"]
    assert rows == [[*x, z] for x, z in zip(*tutorial2_table())]
    assert load_csv(path, target="z") == (*tutorial2_table(), ["x1", "x2"])
    assert load_csv(str(path), target=0) == ([[98, 91], [85, 82], [67, 80], [95, 68]], [70, 50, 65, 25], ["x2", "z"])
    assert load_csv(path, target=-1)[1] == [91, 82, 80, 68]


@pytest.mark.parametrize("text, message", [
    ("a,b\n1,2\n3\n", "bad.csv line 3: 1 values, expected 2 .a, b."),
    ("a,b\n1,2\n\n3,x\n", "bad.csv line 4: column 'b': 'x' is not a number"),
    ("a,b\n1,inf\n", "bad.csv line 2: column 'b': 'inf' is not a finite number"),
    ("", "bad.csv: empty file"),
    ("a,b\n", "bad.csv: has a header but no rows"),
])
def test_load_csv_errors_name_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_csv(path)


def test_an_endless_or_huge_input_is_read_only_up_to_a_bound(tmp_path):
    with pytest.raises(ValueError, match=r"^/dev/zero: larger than 1000 bytes, more than microgd reads \(an endless "
                                         r"input such as /dev/zero\?\)$"):
        load_csv("/dev/zero", max_bytes=1000)
    path = tmp_path / "rows.csv"
    path.write_text("a,b\n" + "1,2\n" * 100)  # 404 bytes
    assert len(load_csv(path, max_bytes=404)[1]) == 100
    with pytest.raises(ValueError, match=r"rows.csv: larger than 403 bytes"):
        load_csv(path, max_bytes=403)
    assert microgd.data.MAX_BYTES == 64 * 2**20  # the default bound
    with pytest.raises(ValueError, match=r"larger than 64 MiB"):
        read_text("/dev/zero")


@pytest.mark.parametrize("target, message", [("Z9", "target 'Z9' is not a column .columns: x1, x2, z."),
                                             (3, "target must be a column name or an index below 3, got 3")])
def test_load_csv_bad_target(tmp_path, target, message):
    path = tmp_path / "table.csv"
    path.write_text(TABLE_CSV)
    with pytest.raises(ValueError, match=message):
        load_csv(path, target=target)


def test_docstring_examples_run():
    result = doctest.testmod(microgd.data)
    assert result.attempted > 0 and result.failed == 0


# -- MinMaxScaler.state_dict / from_state ----------------------------------------------------------

def test_scaler_state_round_trips_exactly():
    scaler = MinMaxScaler((-1, 1)).fit([[1 / 3, 10], [2.5, -7], [0.1, 3]])
    state = scaler.state_dict()
    assert state == {"feature_range": [-1.0, 1.0], "data_min_": [0.1, -7.0], "data_max_": [2.5, 10.0]}
    copy = MinMaxScaler.from_state(json.loads(json.dumps(state)))
    assert copy.feature_range == (-1.0, 1.0)
    rows = [[1.0, 2.0], [-4.0, 30.0]]
    assert copy.transform(rows) == scaler.transform(rows)
    assert copy.inverse_transform(rows) == scaler.inverse_transform(rows)
    with pytest.raises(RuntimeError, match="call fit"):
        MinMaxScaler().state_dict()


GOOD_SCALER = {"feature_range": [0, 1], "data_min_": [1, 2], "data_max_": [3, 4]}
BAD_SCALERS = [
    ([1, 2], "a scaler state should be an object with keys feature_range, data_min_, data_max_, got list"),
    ({"feature_range": [0, 1], "data_min_": [1]}, "missing 'data_max_'"),
    ({**GOOD_SCALER, "scale_": [1]}, "unexpected 'scale_'"),
    ({**GOOD_SCALER, "feature_range": [1, 0]}, r"feature_range needs lo < hi, got \[1.0, 0.0\]"),
    ({**GOOD_SCALER, "feature_range": [0, 1, 2]}, "feature_range should be 2 numbers"),
    ({**GOOD_SCALER, "data_min_": []}, "data_min_ should be a non-empty list of numbers"),
    ({**GOOD_SCALER, "data_min_": [1]}, "data_min_ has 1 numbers but data_max_ has 2"),
    ({**GOOD_SCALER, "data_max_": [3, True]}, r"data_max_\[1\] must be a finite number, got True"),
    ({**GOOD_SCALER, "data_max_": [3, float("nan")]}, r"data_max_\[1\] must be a finite number, got nan"),
    ({**GOOD_SCALER, "data_max_": [3, 10 ** 400]},
     r"data_max_\[1\] must be a finite number, got an integer of 401 digits"),
    ({**GOOD_SCALER, "data_max_": [3, 2]}, r"data_max_\[1\] = 2.0 should be above data_min_\[1\] = 2.0"),
]


@pytest.mark.parametrize("state, message", BAD_SCALERS)
def test_scaler_from_state_names_the_bad_key(state, message):
    with pytest.raises(ValueError, match=message):
        MinMaxScaler.from_state(state)
