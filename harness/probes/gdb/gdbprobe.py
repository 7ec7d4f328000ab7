"""Runs INSIDE gdb (`source gdbprobe.py`): tracepoints that read Go values and report hits.

The harness drives gdb over GDB/MI (pygdbmi) and calls `python annotrace_arm("CONFIG")`.
Each probed function gets a breakpoint after its prologue (arguments) and one on
every RET instruction (arguments, locals and results are still in the frame there,
as delve's return tracepoints see them). A breakpoint's `stop()` reads what it
needs, writes one console line `annotrace-hit {json}` (a `~"..."` MI record) and
returns False, so the target runs on without a round trip to the harness.

What gdb cannot read for Go is reported as unreadable (unknown), never as absent:
  - interface values whose dynamic type has no DWARF type gdb can look up,
  - values cut by the budget below (strings, slices, maps, node count),
  - memory gdb fails to read.
gdb's own runtime-gdb.py decodes interface types from the runtime type layout,
which newer Go versions changed; dynamic types come from the dwarfinfo helper's
table (runtime type offset -> DWARF type name) instead. Maps use runtime-gdb.py's
printer (it knows Go's swiss tables).

Standard library and the `gdb` module only: this file is not imported by the harness.
"""

import json
import re

import gdb  # noqa: F401  (provided by gdb)

MAX_DEPTH = 3  # pointer and interface hops followed (delve's MaxVariableRecurse is 2)
MAX_STRING = 65536
MAX_ELEMENTS = 64
MAX_NODES = 4000  # per hit
STACK_DEPTH = 24
RESULT_NAME = re.compile(r"^~r\d+$")
POINTER_SHAPED = (gdb.TYPE_CODE_PTR, gdb.TYPE_CODE_FUNC)

_config = {}
_types = {}  # runtime type offset -> gdb.Type (or None when gdb has no such type)
_type_names = {}
_types_base = None
_map_printer = None
_g_type = None
_last_stop = None  # (goroutine, sp, pc) of the last report


class _Budget(Exception):
    pass


class Walk:
    """One hit's reading: every string-like leaf, searched for the sentinels."""

    def __init__(self, sentinels):
        self.sentinels = sentinels
        self.sightings = []
        self.unreadable = []
        self.nodes = 0
        self.seen = set()

    def value(self, value, path, where, depth=0):
        try:
            self._value(value, path, where, depth)
        except _Budget:
            self._cut(where, path, "budget")

    def _cut(self, where, path, reason, content="value", loaded=None, length=None, detail=""):
        """A value that could not be read in full (harness.probes.events.Unreadable)."""
        self.unreadable.append({"where": where, "path": path, "reason": reason, "content": content,
                                "loaded": loaded, "length": length, "detail": detail})

    def _text(self, text, path, where):
        for sentinel in self.sentinels:
            if sentinel in text:
                self.sightings.append({"value": sentinel, "where": where, "path": path})

    def _value(self, value, path, where, depth):
        """Walk one value; a part gdb fails to read is unknown at its own path, the rest is read."""
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _Budget()
        try:
            self._walk(value, path, where, depth)
        except (gdb.error, gdb.MemoryError, RuntimeError, ValueError, OverflowError) as exc:
            self._cut(where, path, "error", detail=f"gdb: {str(exc)[:60]}")

    def _walk(self, value, path, where, depth):
        name = str(value.type)
        code = value.type.strip_typedefs().code
        if name == "string":
            self._string(value, path, where)
        elif name.startswith("map["):
            self._map(value, path, where, depth)
        elif name.startswith("[]"):
            self._slice(value, path, where, depth, name)
        elif code == gdb.TYPE_CODE_STRUCT:
            fields = [f.name for f in value.type.strip_typedefs().fields()]
            if fields == ["tab", "data"] or fields == ["_type", "data"]:
                self._interface(value, path, where, depth, fields[0])
                return
            for field in fields:
                if field is None or field == "_":
                    continue
                self._value(value[field], f"{path}.{field}", where, depth)
        elif code == gdb.TYPE_CODE_ARRAY:
            low, high = value.type.strip_typedefs().range()
            for index in range(low, min(high, low + MAX_ELEMENTS - 1) + 1):
                self._value(value[index], f"{path}[{index}]", where, depth)
        elif code == gdb.TYPE_CODE_PTR:
            target = value.type.strip_typedefs().target()
            if int(value) == 0 or depth >= MAX_DEPTH or target.code in (gdb.TYPE_CODE_VOID, gdb.TYPE_CODE_FUNC):
                return
            if int(value) in self.seen:
                return
            self.seen.add(int(value))
            self._value(value.dereference(), path, where, depth + 1)

    def _string(self, value, path, where):
        length = int(value["len"])
        if length <= 0:
            return
        read = min(length, MAX_STRING)
        data = bytes(gdb.selected_inferior().read_memory(int(value["str"]), read))
        self._text(data.decode(errors="replace"), path, where)
        if length > read:
            self._cut(where, path, "truncated", "text", read, length)

    def _slice(self, value, path, where, depth, name):
        length = int(value["len"])
        if length <= 0:
            return
        if name in ("[]uint8", "[]byte"):
            read = min(length, MAX_STRING * 16)
            data = bytes(gdb.selected_inferior().read_memory(int(value["array"]), read))
            self._text(data.decode(errors="replace"), f"{path} (bytes)", where)
            if length > read:
                self._cut(where, f"{path} (bytes)", "truncated", "json-bytes" if data.lstrip()[:1] in (b"{", b"[") else "bytes", read, length)
            return
        array = value["array"]
        for index in range(min(length, MAX_ELEMENTS)):
            self._value((array + index).dereference(), f"{path}[{index}]", where, depth)
        if length > MAX_ELEMENTS:
            self._cut(where, path, "truncated", "slice", MAX_ELEMENTS, length)

    def _map(self, value, path, where, depth):
        if int(value) == 0:
            return  # a nil map holds nothing
        header = value.dereference()
        if "used" in {f.name for f in header.type.strip_typedefs().fields()} and int(header["used"]) == 0:
            return  # an empty swiss map may have no groups yet
        if _map_printer is None:
            self._cut(where, path, "unsupported", "map", detail="runtime-gdb.py not loaded")
            return
        children = _map_printer(value.dereference()).children()
        count = 0
        key = None
        for index, (_, item) in enumerate(children):
            if index % 2 == 0:
                key = item
                continue
            count += 1
            if count > MAX_ELEMENTS:
                self._cut(where, path, "truncated", "map", MAX_ELEMENTS)
                return
            if str(key.type) == "string":
                key_text = _read_string(key)
                element = f"{path}[{json.dumps(key_text)}]"
                self._text(key_text, f"{element} (key)", where)
            else:
                element = f"{path}[#{count - 1}]"
                self._value(key, f"{element} (key)", where, depth)
            self._value(item, element, where, depth)

    def _interface(self, value, path, where, depth, type_field):
        data = value["data"]
        if int(data) == 0:
            return  # nil interface
        if depth >= MAX_DEPTH:
            return
        type_pointer = _itab_type(value["tab"]) if type_field == "tab" else value["_type"]
        dynamic = _dynamic_type(int(type_pointer))
        if dynamic is None:
            name = _type_names.get(int(type_pointer) - (_types_base or 0), "?")
            self._cut(where, path, "unsupported", "interface", detail=f"gdb has no type {name}")
            return
        if _direct(dynamic):
            inner = data.cast(dynamic)
        else:
            inner = data.cast(dynamic.pointer()).dereference()
        self._value(inner, path, where, depth + 1)


def _itab_type(tab):
    """An itab's dynamic type: `Type` since Go 1.22 (internal/abi.ITab), `_type` before."""
    fields = {f.name for f in tab.dereference().type.strip_typedefs().fields()}
    return tab["Type"] if "Type" in fields else tab["_type"]


def _read_string(value):
    length = int(value["len"])
    if length <= 0:
        return ""
    data = bytes(gdb.selected_inferior().read_memory(int(value["str"]), min(length, MAX_STRING)))
    return data.decode(errors="replace")


def _direct(gdb_type):
    """Whether an interface stores a value of this type in its data word itself."""
    base = gdb_type.strip_typedefs()
    name = str(gdb_type)
    if base.code in POINTER_SHAPED or name.startswith(("map[", "chan ", "func(")):
        return True
    if base.code == gdb.TYPE_CODE_STRUCT:
        fields = base.fields()
        return len(fields) == 1 and _direct(fields[0].type)
    if base.code == gdb.TYPE_CODE_ARRAY:
        low, high = base.range()
        return high - low == 0 and _direct(base.target())
    return False


def _lookup_type(name):
    """A DWARF type by its Go name; pointer types by their element (gdb may not list `*T` itself)."""
    try:
        return gdb.lookup_type(name)
    except gdb.error:
        pass
    if name.startswith("*"):
        element = _lookup_type(name[1:])
        return element.pointer() if element is not None else None
    return None


def _dynamic_type(address):
    offset = address - (_types_base or 0)
    if offset not in _types:
        name = _type_names.get(offset)
        found = None
        if name is not None:
            found = _lookup_type(name)
        _types[offset] = found
    return _types[offset]


def _goroutine():
    """The goroutine id: Go's register ABI keeps the current g in R14 on amd64."""
    global _g_type
    try:
        if _g_type is None:
            _g_type = gdb.lookup_type("runtime.g").pointer()
        return int(gdb.parse_and_eval("$r14").cast(_g_type).dereference()["goid"])
    except gdb.error:
        return 0


def _stack(frame):
    frames = []
    while frame is not None and len(frames) < STACK_DEPTH:
        sal = frame.find_sal()
        filename = sal.symtab.filename if sal.symtab is not None else ""
        frames.append([frame.name() or "?", filename, sal.line])
        try:
            frame = frame.older()
        except gdb.error:
            break
    return frames


def _symbols(frame):
    """(arguments, locals) in scope at the frame's pc, innermost block outwards."""
    arguments, locals_ = [], []
    names = set()
    block = frame.block()
    while block is not None:
        for symbol in block:
            if symbol.name in names or not (symbol.is_argument or symbol.is_variable):
                continue
            names.add(symbol.name)
            (arguments if symbol.is_argument else locals_).append(symbol)
        if block.function is not None:
            break
        block = block.superblock
    return arguments, locals_


class Probe(gdb.Breakpoint):
    def __init__(self, spec, function, kind, results):
        super().__init__(spec, internal=True)
        self.function = function
        self.kind = kind
        self.results = results  # names DWARF marks as results (named results included)

    def stop(self):
        try:
            # Go's async preemption (SIGURG) can interrupt the step over this breakpoint; the
            # goroutine then comes back to the same pc and hits it again. A slow read makes that
            # likelier (sysmon preempts goroutines that look busy), so report each stop once:
            # a stop on the same goroutine, stack pointer and pc as the last report, with no
            # other tracepoint hit in between, is that repeat.
            global _last_stop
            frame = gdb.newest_frame()
            here = (_goroutine(), int(frame.read_register("rsp")), int(frame.pc()))
            if here == _last_stop:
                return False
            _last_stop = here
            self._report()
        except Exception as exc:  # never stop the target because of a reading bug
            gdb.write(f"annotrace-error {json.dumps({'function': self.function, 'error': repr(exc)[:200]})}\n")
        return False

    def _report(self):
        frame = gdb.newest_frame()
        walk = Walk(_config["sentinels"])
        arguments, locals_ = _symbols(frame)
        result_types = []
        for symbol in arguments:
            is_result = symbol.name in self.results or RESULT_NAME.match(symbol.name)
            if is_result and self.kind == "call":
                continue  # results hold garbage at entry
            if is_result:
                result_types.append(str(symbol.type))
            walk.value(symbol.value(frame), symbol.name, "return" if is_result else "argument")
        if self.kind == "return":
            for symbol in locals_:
                walk.value(symbol.value(frame), symbol.name, "local")
        sal = frame.find_sal()
        record = {
            "kind": self.kind,
            "function": self.function,
            "file": sal.symtab.filename if sal.symtab is not None else "",
            "line": sal.line,
            "pc": int(frame.pc()),
            "goroutine": _goroutine(),
            "stack": _stack(frame),
            "sightings": walk.sightings,
            "unreadable": walk.unreadable,
            "result_types": result_types,
            "nodes": walk.nodes,
        }
        gdb.write("annotrace-hit " + json.dumps(record, separators=(",", ":")) + "\n")
        gdb.flush()


def _function_range(name):
    value = gdb.parse_and_eval(f"'{name}'")
    address = int(value.address) if value.address is not None else int(value)
    block = gdb.block_for_pc(address)
    while block is not None and block.function is None:
        block = block.superblock
    if block is None:
        raise gdb.error(f"no block for {name}")
    return block.start, block.end


def annotrace_arm(config_path):
    """Read the harness's config and set the tracepoints; reports `annotrace-armed {json}`."""
    global _config, _type_names, _types_base, _map_printer
    with open(config_path) as handle:
        _config = json.load(handle)
    _type_names = {int(k): v for k, v in _config.get("types", {}).items()}
    try:
        _types_base = int(gdb.parse_and_eval("'runtime.firstmoduledata'.types"))
    except gdb.error:
        _types_base = None
    _map_printer = globals().get("MapTypePrinter")  # defined by runtime-gdb.py when sourced first
    armed, failed = 0, {}
    arch = gdb.selected_inferior().architecture()
    for function, results in _config["functions"].items():
        try:
            start, end = _function_range(function)
            Probe(f"'{function}'", function, "call", set(results))
            armed += 1
            for instruction in arch.disassemble(start, end - 1):
                if instruction["asm"].split()[0] in ("ret", "retq"):
                    Probe(f"*{instruction['addr']}", function, "return", set(results))
                    armed += 1
        except gdb.error as exc:
            failed[function] = str(exc)[:200]
    gdb.write("annotrace-armed " + json.dumps({"breakpoints": armed, "failed": failed,
                                                "types_base": _types_base,
                                                "maps": _map_printer is not None}) + "\n")
    gdb.flush()
