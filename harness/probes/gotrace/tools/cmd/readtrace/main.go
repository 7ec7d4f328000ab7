// readtrace reads Go execution traces (golang.org/x/exp/trace) and prints, as JSON
// lines, every user log event of category "annotrace" (what instrumented functions
// logged), with its goroutine, time and stack; then one summary line.
//
//	readtrace FILE.trace [...]
//
// Stack frames of runtime/trace and of the annotraceprobe package are dropped, so
// stack[0] is the instrumented function. An unreadable or truncated file: one line
// on stderr, exit 2.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/exp/trace"
)

type frame struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

type entry struct {
	TimeNS    int64   `json:"time_ns"`
	Goroutine int64   `json:"goroutine"`
	Message   string  `json:"message"`
	Stack     []frame `json:"stack"`
}

type summary struct {
	Regions int      `json:"regions"`
	Logs    int      `json:"logs"`
	Files   []string `json:"files"`
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: readtrace FILE.trace [...]")
	}
	out := json.NewEncoder(os.Stdout)
	total := summary{Files: os.Args[1:]}
	for _, path := range os.Args[1:] {
		if err := read(path, out, &total); err != nil {
			fail(fmt.Sprintf("%s: %v", path, err))
		}
	}
	out.Encode(map[string]summary{"summary": total})
}

func read(path string, out *json.Encoder, total *summary) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	reader, err := trace.NewReader(f)
	if err != nil {
		return err
	}
	for {
		event, err := reader.ReadEvent()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a complete execution trace (%v)", err)
		}
		switch event.Kind() {
		case trace.EventRegionBegin:
			total.Regions++
		case trace.EventLog:
			log := event.Log()
			if log.Category != "annotrace" {
				continue
			}
			total.Logs++
			e := entry{TimeNS: int64(event.Time()), Goroutine: int64(event.Goroutine()), Message: log.Message,
				Stack: []frame{}}
			for f := range event.Stack().Frames() {
				if strings.HasPrefix(f.Func, "runtime/trace.") || strings.Contains(f.Func, "/annotraceprobe.") {
					continue
				}
				e.Stack = append(e.Stack, frame{f.Func, f.File, int(f.Line)})
			}
			if err := out.Encode(e); err != nil {
				return err
			}
		}
	}
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "readtrace: "+message)
	os.Exit(2)
}
