"""Request bodies to numpy matrices in feature order, with 4xx messages for every mistake.

Three input forms (documented in `GET /openapi.json`):

- rows: ``{"instances": [{FEATURE: VALUE, ...}, ...]}``
- columns: ``{"columns": {FEATURE: [VALUE, ...], ...}}``
- Open Inference Protocol v2: ``{"inputs": [{"name", "shape", "datatype", "data"}]}``,
  either one tensor of shape ``[N, FEATURES]`` in feature order, or one tensor per
  feature (named like the feature) of shape ``[N]`` or ``[N, 1]``. With the binary
  tensor data extension, a tensor's ``data`` is replaced by
  ``"parameters": {"binary_data_size": BYTES}`` and its values follow the JSON header
  in the body, little-endian (BYTES: each element a 4-byte length, then UTF-8).

Every value is checked against its feature's JSON type: a string is never silently
turned into a number, a boolean is not a number, `null` only where the feature is
nullable (it becomes NaN). No pandas here: this runs on every request.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mlcycle.registry.features import Feature
    from mlcycle.serve.model import ServedModel

_NUMBER_TYPES = frozenset({int, float})
_MAX_LISTED = 5

V2_DATATYPES = {
    "BOOL": "boolean",
    "UINT8": "integer",
    "UINT16": "integer",
    "UINT32": "integer",
    "UINT64": "integer",
    "INT8": "integer",
    "INT16": "integer",
    "INT32": "integer",
    "INT64": "integer",
    "FP16": "number",
    "FP32": "number",
    "FP64": "number",
    "BYTES": "string",
}
"""Open Inference Protocol tensor datatypes and the JSON type of their elements."""

_BINARY_DTYPES = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
"""How each fixed-size datatype is laid out in binary tensor data (BYTES has no size)."""


class RequestError(Exception):
    """A request the engine refuses: an HTTP status (4xx or 503) and a message."""

    def __init__(
        self, status: int, message: str, *, headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = list(headers)


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return f"{shown} and {more} more" if more > 0 else shown


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Codec:
    """Decodes request bodies for one model's feature schema."""

    def __init__(self, model: ServedModel) -> None:
        self.features: tuple[Feature, ...] = model.features
        self.names = model.feature_names
        self.keys = frozenset(self.names)
        self.width = len(self.names)
        self._get = itemgetter(*self.names)
        self._single = self.width == 1
        self.dtype = model.predictor.input_dtype
        self.numeric = all(f.numeric for f in self.features)
        # The fast path: every feature a plain non-null number (the common case).
        self.plain = all(f.type == "number" and not f.nullable for f in self.features)

    # --- rows ------------------------------------------------------------------------

    def instances(self, instances: Any) -> np.ndarray:
        """The matrix for an `instances` list."""
        if type(instances) is not list:
            raise RequestError(
                400, f"'instances' must be an array of objects, got {json_type(instances)}"
            )
        if not instances:
            raise RequestError(400, "'instances' is empty; send at least one row")
        keys, width, get = self.keys, self.width, self._get
        rows = []
        for i, instance in enumerate(instances):
            if type(instance) is not dict:
                raise RequestError(
                    400,
                    f"instances[{i}] must be an object of features, got {json_type(instance)}",
                )
            if len(instance) != width or instance.keys() != keys:
                raise self._key_problem(instance.keys(), f"instances[{i}]")
            rows.append(get(instance))
        if self._single:
            rows = [(v,) for v in rows]
        return self._matrix(rows, lambda i, j: f"instances[{i}][{self.names[j]!r}]")

    # --- columns ---------------------------------------------------------------------

    def columns(self, columns: Any) -> np.ndarray:
        """The matrix for a `columns` object."""
        if type(columns) is not dict:
            raise RequestError(
                400,
                f"'columns' must be an object mapping each feature to an array, "
                f"got {json_type(columns)}",
            )
        if columns.keys() != self.keys:
            raise self._key_problem(columns.keys(), "'columns'")
        length = None
        for name in self.names:
            values = columns[name]
            if type(values) is not list:
                raise RequestError(
                    400, f"columns[{name!r}] must be an array, got {json_type(values)}"
                )
            if length is None:
                length = len(values)
            elif len(values) != length:
                raise RequestError(
                    400,
                    f"columns[{name!r}] has {len(values)} values but "
                    f"columns[{self.names[0]!r}] has {length}; every column needs one per row",
                )
        if not length:
            raise RequestError(400, "'columns' are empty; send at least one row")
        rows = list(zip(*(columns[name] for name in self.names), strict=True))
        return self._matrix(rows, lambda i, j: f"columns[{self.names[j]!r}][{i}]")

    # --- Open Inference Protocol v2 ----------------------------------------------------

    def v2_inputs(self, inputs: Any, binary: bytes | memoryview | None = None) -> np.ndarray:
        """The matrix for the `inputs` of a v2 inference request.

        `binary` is what follows the JSON header in a request of the binary tensor data
        extension (None when the request has no Inference-Header-Content-Length): the
        tensors that declare `binary_data_size` take their bytes from it, in order.
        """
        if type(inputs) is not list or not inputs:
            raise RequestError(400, "'inputs' must be a non-empty array of tensors")
        view = None if binary is None else memoryview(binary)
        tensors = []
        offset = 0
        for i, t in enumerate(inputs):
            tensor, offset = _tensor(t, i, view, offset)
            tensors.append(tensor)
        if view is not None and offset != len(view):
            raise RequestError(
                400,
                f"the body has {len(view)} bytes of binary tensor data after the JSON header "
                f"but the inputs' binary_data_size add up to {offset}; they must be equal",
            )
        if (
            len(tensors) == 1
            and len(tensors[0][1]) == 2
            and not (self._single and tensors[0][0] == self.names[0])
        ):
            name, shape, kind, data = tensors[0]
            rows_count, width = shape
            if width != self.width:
                raise RequestError(
                    400,
                    f"input {name!r} has shape {shape}; a single input tensor must be "
                    f"[N, {self.width}] (one column per feature, in the order of GET /v2/models)",
                )
            if rows_count == 0:
                raise RequestError(400, f"input {name!r} has no rows")
            self._check_kind(kind, name)

            def at(i: int, j: int) -> str:
                return f"input {name!r} row {i} column {j}"

            if type(data) is np.ndarray:
                if self._fast(kind):
                    given = data.reshape(rows_count, width)
                    with np.errstate(over="ignore"):  # too large for float32: inf, refused
                        matrix = given.astype(self.dtype)
                    return self._finite(matrix, at, lambda i, j: given[i, j])
                data = _values(data)
            rows = [tuple(data[r * width : (r + 1) * width]) for r in range(rows_count)]
            return self._matrix(rows, at)
        by_name = {}
        for name, shape, kind, data in tensors:
            if name in by_name:
                raise RequestError(400, f"input {name!r} appears twice")
            if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
                raise RequestError(
                    400,
                    f"input {name!r} has shape {shape}; per-feature inputs must be [N] or [N, 1]",
                )
            by_name[name] = (shape[0], kind, data)
        if by_name.keys() != self.keys:
            raise self._key_problem(by_name.keys(), "'inputs'", noun="input")
        counts = {n: by_name[n][0] for n in self.names}
        length = counts[self.names[0]]
        if any(c != length for c in counts.values()):
            raise RequestError(400, f"inputs have different numbers of rows: {counts}")
        if length == 0:
            raise RequestError(400, "inputs have no rows")
        for j, name in enumerate(self.names):
            self._check_kind(by_name[name][1], name, self.features[j])

        def where(i: int, j: int) -> str:
            return f"input {self.names[j]!r}[{i}]"

        columns = [by_name[n][2] for n in self.names]
        if all(type(c) is np.ndarray for c in columns) and all(
            self._fast(by_name[n][1]) for n in self.names
        ):
            matrix = np.empty((length, self.width), dtype=self.dtype)
            with np.errstate(over="ignore"):  # too large for float32: inf, refused
                for j, column in enumerate(columns):
                    matrix[:, j] = column
            return self._finite(matrix, where, lambda i, j: columns[j][i])
        columns = [_values(c) if type(c) is np.ndarray else c for c in columns]
        rows = list(zip(*columns, strict=True))
        return self._matrix(rows, where)

    def _fast(self, kind: str) -> bool:
        """Whether binary values of `kind` go to the matrix without a Python value each:
        every feature a non-null number, and the values numbers (not booleans)."""
        return self.plain and kind in ("number", "integer")

    def _finite(
        self,
        matrix: np.ndarray,
        where: Callable[[int, int], str],
        given: Callable[[int, int], Any],
    ) -> np.ndarray:
        """`matrix` (of binary values), or a 400 naming the first value that is not finite
        in it (`given(i, j)`: the value as sent)."""
        finite = np.isfinite(matrix)
        if finite.all():
            return matrix
        i, j = (int(k) for k in np.argwhere(~finite)[0])
        value = given(i, j)
        if np.isnan(value):
            problem = "NaN is not allowed for this feature (it is not nullable)"
        elif np.isinf(value):
            problem = "infinity is not a value the model takes"
        else:
            problem = f"{value} is too large for the model (not finite at its precision)"
        raise RequestError(400, f"{where(i, j)}: {problem}")

    def _check_kind(self, kind: str, name: str, feature: Feature | None = None) -> None:
        wanted = {feature.type} if feature is not None else {f.type for f in self.features}
        numeric = {"number", "integer", "boolean"}
        if kind == "string" and wanted & numeric:
            raise RequestError(
                400, f"input {name!r} is BYTES but the model takes numbers there; use FP64"
            )
        if kind != "string" and "string" in wanted:
            raise RequestError(
                400, f"input {name!r} is numeric but the model takes strings there; use BYTES"
            )

    # --- shared ----------------------------------------------------------------------

    def _key_problem(self, given: Any, where: str, noun: str = "feature") -> RequestError:
        given = set(given)
        missing = [n for n in self.names if n not in given]
        unknown = sorted(str(k) for k in given - self.keys)
        parts = []
        if missing:
            parts.append(f"missing {noun}{'s' if len(missing) > 1 else ''} {_listing(missing)}")
        if unknown:
            parts.append(f"unknown {noun}{'s' if len(unknown) > 1 else ''} {_listing(unknown)}")
        return RequestError(
            400, f"{where}: {'; '.join(parts)} (GET /v1/model lists the model's features)"
        )

    def _matrix(self, rows: list[Any], where: Callable[[int, int], str]) -> np.ndarray:
        """Rows of Python values to a matrix of the predictor's dtype, checking types."""
        if self.plain:
            if not _NUMBER_TYPES.issuperset(map(type, chain.from_iterable(rows))):
                raise self._type_problem(rows, where)
            try:
                matrix = np.array(rows, dtype=self.dtype)
            except OverflowError as e:
                raise RequestError(400, f"a number is too large: {e}") from e
            if not np.isfinite(matrix).all():
                raise RequestError(400, "a number is too large for the model (not finite)")
            return matrix
        return self._general(rows, where)

    def _type_problem(self, rows: list[Any], where: Callable[[int, int], str]) -> RequestError:
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                problem = _value_problem(self.features[j], value)
                if problem:
                    return RequestError(400, f"{where(i, j)}: {problem}")
        return RequestError(400, "a value has the wrong type")  # pragma: no cover

    def _general(self, rows: list[Any], where: Callable[[int, int], str]) -> np.ndarray:
        features = self.features
        out: list[list[Any]] = []
        for i, row in enumerate(rows):
            converted = []
            for j, value in enumerate(row):
                feature = features[j]
                problem = _value_problem(feature, value)
                if problem:
                    raise RequestError(400, f"{where(i, j)}: {problem}")
                if value is None:
                    converted.append(math.nan if feature.numeric else None)
                elif feature.type == "boolean":
                    converted.append(1.0 if value else 0.0)
                else:
                    converted.append(value)
            out.append(converted)
        if not self.numeric:
            matrix = np.empty((len(out), self.width), dtype=object)
            matrix[:] = out
            return matrix
        try:
            matrix = np.array(out, dtype=self.dtype)
        except OverflowError as e:
            raise RequestError(400, f"a number is too large: {e}") from e
        if np.isinf(matrix).any():
            raise RequestError(400, "a number is too large for the model (not finite)")
        return matrix


def _value_problem(feature: Feature, value: Any) -> str | None:
    """Why `value` is not a valid value of `feature`, or None."""
    kind = type(value)
    if value is None:
        return None if feature.nullable else "null is not allowed for this feature"
    expected = feature.type
    if expected == "number":
        ok = kind is int or kind is float
    elif expected == "integer":
        ok = kind is int or (kind is float and value.is_integer())
    elif expected == "boolean":
        ok = kind is bool
    else:
        ok = kind is str
    if ok:
        return None
    article = "an" if expected == "integer" else "a"
    return f"expected {article} {expected}, got {json_type(value)} {_preview(value)}"


def _tensor(
    tensor: Any, index: int, binary: memoryview | None, offset: int
) -> tuple[tuple[str, list[int], str, Any], int]:
    """(name, shape, element JSON type, flat data) of one v2 input tensor, checked, and
    the offset in `binary` after its bytes.

    The data is a list of JSON values, or for a tensor sent as binary data a numpy array
    (a list of text for BYTES).
    """
    where = f"inputs[{index}]"
    if type(tensor) is not dict:
        raise RequestError(400, f"{where} must be an object, got {json_type(tensor)}")
    unknown = set(tensor) - {"name", "shape", "datatype", "data", "parameters"}
    if unknown:
        raise RequestError(400, f"{where}: unknown field(s) {_listing(sorted(unknown))}")
    parameters = tensor.get("parameters", {})
    if type(parameters) is not dict:
        raise RequestError(400, f"{where}.parameters must be an object")
    size_given = "binary_data_size" in parameters
    for key in (
        ("name", "shape", "datatype") if size_given else ("name", "shape", "datatype", "data")
    ):
        if key not in tensor:
            raise RequestError(400, f"{where}: missing field {key!r}")
    name, shape, datatype = (tensor[k] for k in ("name", "shape", "datatype"))
    if type(name) is not str:
        raise RequestError(400, f"{where}.name must be a string")
    where = f"input {name!r}"
    if (
        type(shape) is not list
        or not 1 <= len(shape) <= 2
        or not all(type(d) is int and 0 <= d < 2**31 for d in shape)
    ):
        raise RequestError(
            400, f"{where}: shape must be [N] or [N, M] with non-negative integers, got {shape!r}"
        )
    if datatype not in V2_DATATYPES:
        raise RequestError(
            400,
            f"{where}: unknown datatype {datatype!r}; use one of {', '.join(V2_DATATYPES)}",
        )
    kind = V2_DATATYPES[datatype]
    size = shape[0] * (shape[1] if len(shape) == 2 else 1)
    if size_given:
        if "data" in tensor:
            raise RequestError(
                400, f"{where}: has both 'data' and parameters.binary_data_size; send one"
            )
        raw, offset = _binary_slice(parameters["binary_data_size"], binary, offset, where)
        return (name, shape, kind, _binary_values(raw, datatype, size, where)), offset
    data = tensor["data"]
    if type(data) is not list:
        raise RequestError(400, f"{where}: data must be an array, got {json_type(data)}")
    flat = _flatten(data, where)
    if len(flat) != size:
        raise RequestError(400, f"{where}: shape {shape} needs {size} values, data has {len(flat)}")
    for value in flat:
        kind_ok = (
            (kind == "boolean" and type(value) is bool)
            or (kind == "integer" and type(value) is int)
            or (kind == "number" and type(value) in _NUMBER_TYPES)
            or (kind == "string" and type(value) is str)
        )
        if not kind_ok:
            raise RequestError(
                400, f"{where}: {datatype} data holds {json_type(value)} {_preview(value)}"
            )
    return (name, shape, kind, flat), offset


def _binary_slice(
    declared: Any, binary: memoryview | None, offset: int, where: str
) -> tuple[memoryview, int]:
    """The `declared` bytes of a tensor at `offset` of the binary data, checked against
    what the body holds; and the offset after them."""
    if type(declared) is not int or declared < 0:
        raise RequestError(
            400,
            f"{where}: parameters.binary_data_size must be a non-negative integer, "
            f"got {json_type(declared)} {_preview(declared)}",
        )
    if binary is None:
        raise RequestError(
            400,
            f"{where} has parameters.binary_data_size but the request has no "
            "Inference-Header-Content-Length header (the length of the JSON header before "
            "the binary data)",
        )
    remaining = len(binary) - offset
    if declared > remaining:
        raise RequestError(
            400,
            f"{where}: binary_data_size is {declared} bytes but only {remaining} bytes of "
            "binary data remain in the body",
        )
    return binary[offset : offset + declared], offset + declared


def _binary_values(raw: memoryview, datatype: str, size: int, where: str) -> Any:
    """The `size` elements of a binary tensor: a flat numpy array, or text for BYTES."""
    if datatype == "BYTES":
        return _bytes_elements(raw, size, where)
    dtype = _BINARY_DTYPES[datatype]
    needed = size * dtype.itemsize
    if len(raw) != needed:
        raise RequestError(
            400,
            f"{where}: {size} {datatype} values take {needed} bytes, "
            f"binary_data_size is {len(raw)}",
        )
    if datatype == "BOOL":
        octets = np.frombuffer(raw, dtype=np.uint8)
        if size and octets.max() > 1:
            k = int(np.argmax(octets > 1))
            raise RequestError(
                400, f"{where}: BOOL element {k} is byte {int(octets[k])}; use 0 or 1"
            )
    return np.frombuffer(raw, dtype=dtype)


def _bytes_elements(raw: memoryview, count: int, where: str) -> list[str]:
    """`count` BYTES elements (each a 4-byte little-endian length, then that many bytes of
    UTF-8) filling `raw` exactly."""
    end = len(raw)
    if count * 4 > end:
        raise RequestError(
            400,
            f"{where}: {count} BYTES elements need at least {count * 4} bytes (a 4-byte "
            f"length each), binary_data_size is {end}",
        )
    data = bytes(raw)
    values = []
    position = 0
    for k in range(count):
        if position + 4 > end:
            raise RequestError(
                400, f"{where}: BYTES element {k} has no 4-byte length (the data ends)"
            )
        length = int.from_bytes(data[position : position + 4], "little")
        position += 4
        if length > end - position:
            raise RequestError(
                400,
                f"{where}: BYTES element {k} declares {length} bytes but only "
                f"{end - position} remain",
            )
        try:
            values.append(data[position : position + length].decode("utf-8"))
        except UnicodeDecodeError as e:
            raise RequestError(
                400, f"{where}: BYTES element {k} is not UTF-8 text ({e.reason})"
            ) from None
        position += length
    if position != end:
        raise RequestError(
            400,
            f"{where}: {end - position} bytes are left after its {count} BYTES elements; "
            "binary_data_size must cover exactly the tensor's elements",
        )
    return values


def _values(array: np.ndarray) -> list[Any]:
    """Binary values as JSON-like Python values; NaN is null (a missing value)."""
    values: list[Any] = array.tolist()
    if array.dtype.kind == "f":
        return [None if v != v else v for v in values]
    return values


def _flatten(data: list[Any], where: str) -> list[Any]:
    """Row-major flattening of nested arrays (the protocol allows both forms)."""
    if not data or type(data[0]) is not list:
        if any(type(v) is list for v in data):
            raise RequestError(400, f"{where}: data mixes arrays and scalars")
        return data
    flat: list[Any] = []
    for item in data:
        if type(item) is not list:
            raise RequestError(400, f"{where}: data mixes arrays and scalars")
        flat.extend(_flatten(item, where))
    return flat
