// dwarfinfo reads a Go binary's DWARF and prints what the gdb backend cannot get
// from gdb itself, as one JSON document on stdout:
//
//   - "types": runtime type descriptor address -> DWARF type name, from the Go
//     linker's DW_AT_go_runtime_type attribute. An interface value holds the address
//     of its dynamic type's descriptor; gdb's own helper (runtime-gdb.py) decodes the
//     descriptor by layout, which newer Go versions changed, so names come from here.
//   - "functions": for each function named on the command line, its formal
//     parameters in order, each marked as an argument or a result (DWARF's
//     DW_AT_variable_parameter). gdb shows results as arguments.
//
// Usage: dwarfinfo BINARY [FUNCTION ...]   (exit 2 with one line on bad input)
package main

import (
	"debug/dwarf"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
)

// attrGoRuntimeType is DW_AT_go_runtime_type (cmd/internal/dwarf).
const attrGoRuntimeType dwarf.Attr = 0x2904

type param struct {
	Name   string `json:"name"`
	Result bool   `json:"result"`
}

type output struct {
	Types     map[string]string  `json:"types"`
	Functions map[string][]param `json:"functions"`
	Missing   []string           `json:"missing"`
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: dwarfinfo BINARY [FUNCTION ...]")
	}
	file, err := elf.Open(os.Args[1])
	if err != nil {
		fail(fmt.Sprintf("cannot open %s: %v", os.Args[1], err))
	}
	data, err := file.DWARF()
	if err != nil {
		fail(fmt.Sprintf("%s has no readable DWARF (%v): build it with debug info", os.Args[1], err))
	}
	wanted := map[string]bool{}
	for _, name := range os.Args[2:] {
		wanted[name] = true
	}
	out := output{Types: map[string]string{}, Functions: map[string][]param{}, Missing: []string{}}
	reader := data.Reader()
	var current string // the wanted function whose children are being read
	for {
		entry, err := reader.Next()
		if err != nil {
			fail(fmt.Sprintf("reading DWARF of %s: %v", os.Args[1], err))
		}
		if entry == nil {
			break
		}
		if entry.Tag == 0 { // end of a children list
			current = ""
			continue
		}
		name, _ := entry.Val(dwarf.AttrName).(string)
		if address, ok := entry.Val(attrGoRuntimeType).(uint64); ok && name != "" {
			out.Types[strconv.FormatUint(address, 10)] = name
		}
		switch entry.Tag {
		case dwarf.TagSubprogram:
			current = ""
			if wanted[name] {
				current = name
				out.Functions[name] = []param{}
			} else if entry.Children {
				reader.SkipChildren()
			}
		case dwarf.TagFormalParameter:
			if current != "" {
				result, _ := entry.Val(dwarf.AttrVarParam).(bool)
				out.Functions[current] = append(out.Functions[current], param{name, result})
			}
		default:
			if current != "" && entry.Children && entry.Tag != dwarf.TagLexDwarfBlock {
				reader.SkipChildren()
			}
		}
	}
	for name := range wanted {
		if _, ok := out.Functions[name]; !ok {
			out.Missing = append(out.Missing, name)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err.Error())
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "dwarfinfo: "+message)
	os.Exit(2)
}
