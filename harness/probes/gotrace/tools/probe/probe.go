// Package probe is copied into the containerd source tree as package annotraceprobe
// (<module>/annotraceprobe) by cmd/instrument. Standard library only.
//
// When ANNOTRACE_TRACE_DIR is set, the process writes a runtime execution trace to
// $ANNOTRACE_TRACE_DIR/<program>-<pid>-<n>.trace.partial, renamed to .trace once
// finished: on SIGUSR2 (the harness ends a probe pass; the next file starts at once)
// or when Stop runs (deferred in main). Instrumented functions call Enter at entry
// and Return at each return: a trace region per call, and a trace log (category
// "annotrace") with the sentinels (ANNOTRACE_SENTINELS, a JSON array) found in the
// arguments, locals and results, with Go-like paths. What could not be read is
// listed as unreadable: unknown, never absent. Without the variable all of this
// costs one atomic load per call.
package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

const (
	maxDepth    = 4      // pointer and interface hops followed
	maxElements = 256    // slice, array and map entries read
	maxNodes    = 100000 // values visited per call
)

var (
	enabled   atomic.Bool
	sentinels []string
	dir       string
	mu        sync.Mutex
	file      *os.File
	partial   string
	sequence  int
)

func init() {
	dir = os.Getenv("ANNOTRACE_TRACE_DIR")
	if dir == "" {
		return
	}
	_ = json.Unmarshal([]byte(os.Getenv("ANNOTRACE_SENTINELS")), &sentinels)
	mu.Lock()
	start()
	mu.Unlock()
	rotate := make(chan os.Signal, 1)
	signal.Notify(rotate, syscall.SIGUSR2)
	go func() {
		for range rotate {
			mu.Lock()
			finish()
			start()
			mu.Unlock()
		}
	}()
}

func start() {
	name := fmt.Sprintf("%s-%d-%d.trace", filepath.Base(os.Args[0]), os.Getpid(), sequence)
	sequence++
	partial = filepath.Join(dir, name+".partial")
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintf(os.Stderr, "annotraceprobe: cannot create %s: %v\n", partial, err)
		return
	}
	if err := trace.Start(f); err != nil {
		fmt.Fprintf(os.Stderr, "annotraceprobe: cannot start the execution trace: %v\n", err)
		f.Close()
		os.Remove(partial)
		return
	}
	file = f
	enabled.Store(true)
}

func finish() {
	if file == nil {
		return
	}
	enabled.Store(false)
	trace.Stop()
	file.Close()
	file = nil
	os.Rename(partial, strings.TrimSuffix(partial, ".partial"))
}

// Stop finishes the current trace file. Safe to call more than once.
func Stop() {
	if dir == "" {
		return
	}
	mu.Lock()
	finish()
	mu.Unlock()
}

// Call is one traced call of an instrumented function.
type Call struct {
	function string
	file     string
	names    []string
	args     []any
	region   *trace.Region
}

// Enter opens the call's region and logs its arguments. file and line are the
// function's place in the original (uninstrumented) source.
func Enter(function, file string, line int, names []string, args ...any) *Call {
	if !enabled.Load() {
		return nil
	}
	call := &Call{function: function, file: file, names: names, args: args}
	call.region = trace.StartRegion(context.Background(), function)
	record := newRecord("call", function, file, line)
	for i, name := range names {
		record.walk(args[i], name, "argument")
	}
	record.log()
	return call
}

// Return logs the arguments, the locals in scope and the results at one return
// statement (line in the original source) and ends the call's region.
func (c *Call) Return(line int, localNames []string, locals []any, resultNames []string, results []any) {
	if c == nil {
		return
	}
	record := newRecord("return", c.function, c.file, line)
	for i, name := range c.names {
		record.walk(c.args[i], name, "argument")
	}
	for i, name := range localNames {
		record.walk(locals[i], name, "local")
	}
	for i, name := range resultNames {
		record.walk(results[i], name, "return")
	}
	record.log()
	c.region.End()
}

type sighting struct {
	Value string `json:"v"`
	Where string `json:"w"`
	Path  string `json:"p"`
}

// unreadable is a value that could not be read in full (harness.probes.events.Unreadable).
type unreadable struct {
	Where   string `json:"where"`
	Path    string `json:"path"`
	Reason  string `json:"reason"`
	Content string `json:"content"`
	Loaded  *int   `json:"loaded"`
	Detail  string `json:"detail"`
}

type record struct {
	Kind       string       `json:"k"`
	Function   string       `json:"f"`
	File       string       `json:"file"`
	Line       int          `json:"line"`
	Sightings  []sighting   `json:"s"`
	Unreadable []unreadable `json:"u"`
	nodes      int
	seen       map[uintptr]bool
}

func newRecord(kind, function, file string, line int) *record {
	return &record{Kind: kind, Function: function, File: file, Line: line, Sightings: []sighting{},
		Unreadable: []unreadable{}}
}

func (r *record) log() {
	data, err := json.Marshal(r)
	if err != nil {
		return
	}
	trace.Log(context.Background(), "annotrace", string(data))
}

// walk searches one variable; a panic while reading it makes it unknown, not a crash.
func (r *record) walk(value any, name, where string) {
	r.nodes = 0
	r.seen = map[uintptr]bool{}
	defer func() {
		if recovered := recover(); recovered != nil {
			r.cut(name, where, "error", "value", -1, fmt.Sprintf("panic: %v", recovered))
		}
	}()
	r.value(reflect.ValueOf(value), name, where, 0)
}

func (r *record) text(text, path, where string) {
	for _, sentinel := range sentinels {
		if sentinel != "" && strings.Contains(text, sentinel) {
			r.Sightings = append(r.Sightings, sighting{sentinel, where, path})
		}
	}
}

func (r *record) cut(path, where, reason, content string, loaded int, detail string) {
	u := unreadable{Where: where, Path: path, Reason: reason, Content: content, Detail: detail}
	if loaded >= 0 {
		u.Loaded = &loaded
	}
	r.Unreadable = append(r.Unreadable, u)
}

func (r *record) value(v reflect.Value, path, where string, depth int) {
	if !v.IsValid() {
		return
	}
	r.nodes++
	if r.nodes > maxNodes {
		if r.nodes == maxNodes+1 {
			r.cut(path, where, "budget", "value", -1, "")
		}
		return
	}
	switch v.Kind() {
	case reflect.String:
		r.text(v.String(), path, where)
	case reflect.Slice:
		if v.IsNil() {
			return
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			r.text(string(v.Bytes()), path+" (bytes)", where) // marshalled JSON travels as bytes
			return
		}
		r.elements(v, path, where, depth)
	case reflect.Array:
		r.elements(v, path, where, depth)
	case reflect.Map:
		if v.IsNil() {
			return
		}
		iter := v.MapRange()
		count := 0
		for iter.Next() {
			count++
			if count > maxElements {
				r.cut(path, where, "truncated", "map", maxElements, "")
				return
			}
			key := iter.Key()
			element := fmt.Sprintf("%s[#%d]", path, count-1)
			if key.Kind() == reflect.String {
				element = path + "[" + strconv.Quote(key.String()) + "]"
				r.text(key.String(), element+" (key)", where)
			} else {
				r.value(key, element+" (key)", where, depth)
			}
			r.value(iter.Value(), element, where, depth)
		}
	case reflect.Pointer:
		if v.IsNil() || depth >= maxDepth || r.seen[v.Pointer()] {
			return
		}
		r.seen[v.Pointer()] = true
		r.value(v.Elem(), path, where, depth+1)
	case reflect.Interface:
		if v.IsNil() || depth >= maxDepth {
			return
		}
		r.value(v.Elem(), path, where, depth+1)
	case reflect.Struct:
		if v.Type().PkgPath() == "context" {
			return // contexts chain to everything; no sentinel travels in one
		}
		for i := 0; i < v.NumField(); i++ {
			r.value(v.Field(i), path+"."+v.Type().Field(i).Name, where, depth)
		}
	}
}

func (r *record) elements(v reflect.Value, path, where string, depth int) {
	n := v.Len()
	for i := 0; i < n && i < maxElements; i++ {
		r.value(v.Index(i), fmt.Sprintf("%s[%d]", path, i), where, depth)
	}
	if n > maxElements {
		switch v.Type().Elem().Kind() {
		case reflect.String, reflect.Struct, reflect.Map, reflect.Pointer, reflect.Interface, reflect.Slice:
			r.cut(path, where, "truncated", "slice", maxElements, "")
		}
	}
}
