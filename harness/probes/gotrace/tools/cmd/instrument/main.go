// instrument rewrites functions of a containerd source tree in place so that each
// call and each return reports to the annotraceprobe package (see ../../probe).
//
//	instrument -src DIR -module MODULE -plan PLAN.json -probe probe.go
//
// PLAN.json: {"functions": ["<module>/core/images.Config", "<module>/client.(*Client).NewContainer",
// "<module>/client.WithImageConfigLabels.func1", ...], "mains": ["cmd/ctr", "cmd/containerd"]}.
// A JSON report goes to stdout: which functions were instrumented (file, line) and
// which not, and why. Bad input: one line on stderr, exit 2.
//
// The rewrite is textual, driven by the AST, and never adds a line: statements are
// inserted on the lines they belong to, so file:line of every original statement is
// unchanged (stacks and drop points read the same as in the plain build):
//
//	func F(a T) (R, error) {            -> { __at := annotraceprobe.Enter(...); _ = __at; ...
//	    return x, err                   -> { var __at_r0 R; var __at_r1 error; __at_r0, __at_r1 = x, err;
//	                                          __at.Return(line, locals..., __at_r0, __at_r1); return __at_r0, __at_r1 }
//
// Locals are the variables declared before the return in enclosing blocks of the
// same function (not of nested function literals).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

const probePackage = "annotraceprobe"

type plan struct {
	Functions []string `json:"functions"`
	Mains     []string `json:"mains"`
}

type placed struct {
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
}

type missing struct {
	Function string `json:"function"`
	Reason   string `json:"reason"`
}

type report struct {
	Instrumented []placed  `json:"instrumented"`
	Missing      []missing `json:"missing"`
	Mains        []string  `json:"mains"`
}

func main() {
	src := flag.String("src", "", "the module source tree to rewrite in place")
	module := flag.String("module", "", "its module path")
	planPath := flag.String("plan", "", "the plan (JSON)")
	probe := flag.String("probe", "", "probe.go to install as <module>/annotraceprobe")
	flag.Parse()
	if *src == "" || *module == "" || *planPath == "" || *probe == "" {
		fail("usage: instrument -src DIR -module MODULE -plan PLAN.json -probe probe.go")
	}
	modFile, err := os.ReadFile(filepath.Join(*src, "go.mod"))
	if err != nil {
		fail(fmt.Sprintf("%s has no go.mod: give the root of a module source tree", *src))
	}
	if !regexp.MustCompile(`(?m)^module\s+` + regexp.QuoteMeta(*module) + `\s*$`).Match(modFile) {
		fail(fmt.Sprintf("%s is not module %s", *src, *module))
	}
	var p plan
	data, err := os.ReadFile(*planPath)
	if err == nil {
		err = json.Unmarshal(data, &p)
	}
	if err != nil {
		fail(fmt.Sprintf("cannot read the plan %s: %v", *planPath, err))
	}
	probeSource, err := os.ReadFile(*probe)
	if err != nil {
		fail(fmt.Sprintf("cannot read %s: %v", *probe, err))
	}
	out := report{Instrumented: []placed{}, Missing: []missing{}, Mains: []string{}}
	edits := map[string][]edit{} // file -> edits
	for _, function := range p.Functions {
		found, why := locate(*src, *module, function)
		if why != "" {
			out.Missing = append(out.Missing, missing{function, why})
			continue
		}
		for _, f := range found {
			edits[f.path] = append(edits[f.path], f.edits...)
			out.Instrumented = append(out.Instrumented, placed{function, f.rel, f.line})
		}
	}
	for _, dir := range p.Mains {
		path, e, ok := mainEdits(*src, dir)
		if !ok {
			out.Missing = append(out.Missing, missing{dir + ".main", "no func main"})
			continue
		}
		edits[path] = append(edits[path], e)
		out.Mains = append(out.Mains, dir)
	}
	importLine := fmt.Sprintf("; import %s %q", probePackage, *module+"/"+probePackage)
	for path, list := range edits {
		if err := apply(path, list, importLine); err != nil {
			fail(err.Error())
		}
	}
	target := filepath.Join(*src, probePackage)
	if err := os.MkdirAll(target, 0o755); err != nil {
		fail(err.Error())
	}
	body := regexp.MustCompile(`(?m)^package probe$`).ReplaceAll(probeSource, []byte("package "+probePackage))
	if err := os.WriteFile(filepath.Join(target, "probe.go"), body, 0o644); err != nil {
		fail(err.Error())
	}
	sort.Slice(out.Instrumented, func(i, j int) bool { return out.Instrumented[i].Function < out.Instrumented[j].Function })
	json.NewEncoder(os.Stdout).Encode(out)
}

func fail(message string) {
	fmt.Fprintln(os.Stderr, "instrument: "+message)
	os.Exit(2)
}

// edit replaces [start, end) of a file's bytes with text (an insertion when start == end).
type edit struct {
	start, end int
	text       string
}

func apply(path string, edits []edit, importLine string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, path, data, parser.PackageClauseOnly)
	if err != nil {
		return err
	}
	// The import goes on the package clause's own line: no line moves.
	edits = append(edits, edit{fset.Position(file.Name.End()).Offset, fset.Position(file.Name.End()).Offset, importLine})
	sort.SliceStable(edits, func(i, j int) bool { return edits[i].start > edits[j].start })
	for _, e := range edits {
		data = append(data[:e.start:e.start], append([]byte(e.text), data[e.end:]...)...)
	}
	return os.WriteFile(path, data, 0o644)
}

type found struct {
	path, rel string
	line      int
	edits     []edit
}

var closureName = regexp.MustCompile(`^func(\d+)$`)

// locate finds the declaration (or function literal) of a symbol and returns its edits.
func locate(src, module, symbol string) ([]found, string) {
	rest, ok := strings.CutPrefix(symbol, module)
	if !ok || rest == "" || (rest[0] != '/' && rest[0] != '.') {
		return nil, "not in module " + module
	}
	if strings.ContainsAny(rest, "[]") {
		return nil, "generic functions are not instrumented"
	}
	dir, name := ".", rest[1:]
	if rest[0] == '/' {
		rest = rest[1:]
		slash := strings.LastIndex(rest, "/")
		dot := strings.Index(rest[slash+1:], ".")
		if dot < 0 {
			return nil, "not a function symbol"
		}
		dir, name = rest[:slash+1+dot], rest[slash+1+dot+1:]
	}
	receiver := ""
	if strings.HasPrefix(name, "(") {
		closing := strings.Index(name, ")")
		if closing < 0 {
			return nil, "bad method symbol"
		}
		receiver, name = name[1:closing], strings.TrimPrefix(name[closing+1:], ".")
	}
	parts := strings.Split(name, ".")
	if receiver == "" && len(parts) > 1 && !closureName.MatchString(parts[1]) {
		receiver, parts = parts[0], parts[1:] // T.Method: a value receiver
	}
	var literals []int
	for i, part := range parts[1:] {
		if i == 0 {
			match := closureName.FindStringSubmatch(part)
			if match == nil {
				return nil, "unknown symbol form " + name
			}
			n, _ := strconv.Atoi(match[1])
			literals = append(literals, n)
			continue
		}
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, "unknown symbol form " + name
		}
		literals = append(literals, n)
	}
	var result []found
	for _, parsed := range goFiles(src, dir) {
		path, data, fset, file := parsed.path, parsed.data, parsed.fset, parsed.file
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil || fn.Name.Name != parts[0] || receiverName(fn) != receiver {
				continue
			}
			typ, body := fn.Type, fn.Body
			var params []*ast.Field
			if fn.Recv != nil {
				params = append(params, fn.Recv.List...)
			}
			if len(literals) > 0 {
				lit := nthLiteral(fn.Body, literals)
				if lit == nil {
					return nil, fmt.Sprintf("%s has no function literal %v", parts[0], literals)
				}
				typ, body, params = lit.Type, lit.Body, nil
			}
			params = append(params, typ.Params.List...)
			rel, _ := filepath.Rel(src, path)
			line := fset.Position(body.Lbrace).Line
			edits := rewrite(fset, data, symbol, rel, line, params, typ.Results, body)
			result = append(result, found{path, rel, line, edits})
		}
	}
	if len(result) == 0 {
		return nil, fmt.Sprintf("no declaration of %s in %s", name, dir)
	}
	return result, ""
}

func receiverName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return ""
	}
	expr := fn.Recv.List[0].Type
	star := ""
	if s, ok := expr.(*ast.StarExpr); ok {
		star, expr = "*", s.X
	}
	switch t := expr.(type) {
	case *ast.Ident:
		return star + t.Name
	case *ast.IndexExpr, *ast.IndexListExpr:
		return "generic"
	}
	return "?"
}

// nthLiteral follows funcN.M...: the Nth function literal directly inside body (not
// nested in another literal), then the Mth directly inside that one, and so on.
func nthLiteral(body *ast.BlockStmt, path []int) *ast.FuncLit {
	var current *ast.FuncLit
	node := ast.Node(body)
	for _, n := range path {
		var hit *ast.FuncLit
		count := 0
		ast.Inspect(node, func(x ast.Node) bool {
			if hit != nil {
				return false
			}
			if lit, ok := x.(*ast.FuncLit); ok && x != node {
				count++
				if count == n {
					hit = lit
				}
				return false // literals inside it are numbered under it
			}
			return true
		})
		if hit == nil {
			return nil
		}
		current, node = hit, hit.Body
	}
	return current
}

type result struct {
	name string // as reported: the declared name, or ~rN
	typ  string // source text of its type
}

func text(fset *token.FileSet, data []byte, node ast.Node) string {
	return strings.ReplaceAll(string(data[fset.Position(node.Pos()).Offset:fset.Position(node.End()).Offset]), "\n", " ")
}

func rewrite(fset *token.FileSet, data []byte, symbol, rel string, line int, params []*ast.Field,
	results *ast.FieldList, body *ast.BlockStmt) []edit {
	var names []string
	for _, field := range params {
		for _, name := range field.Names {
			if name.Name != "_" {
				names = append(names, name.Name)
			}
		}
	}
	var outs []result
	if results != nil {
		for _, field := range results.List {
			typ := text(fset, data, field.Type)
			if len(field.Names) == 0 {
				outs = append(outs, result{fmt.Sprintf("~r%d", len(outs)), typ})
			}
			for _, name := range field.Names {
				label := name.Name
				if label == "_" {
					label = fmt.Sprintf("~r%d", len(outs))
				}
				outs = append(outs, result{label, typ})
			}
		}
	}
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = strconv.Quote(n)
	}
	enter := fmt.Sprintf(" __at := %s.Enter(%q, %q, %d, []string{%s}%s); _ = __at;", probePackage, symbol, rel, line,
		strings.Join(quoted, ", "), prefixed(names))
	edits := []edit{{offset(fset, body.Lbrace) + 1, offset(fset, body.Lbrace) + 1, enter}}
	w := &walker{fset: fset, data: data, outs: outs, resultNames: resultsNamed(results)}
	w.top = w.block(body.List, nil)
	edits = append(edits, w.edits...)
	if len(outs) == 0 && !endsWithReturn(body) {
		edits = append(edits, edit{offset(fset, body.Rbrace), offset(fset, body.Rbrace),
			"; " + w.returnCall(fset.Position(body.Rbrace).Line, w.top, nil) + ";"})
	}
	return edits
}

func prefixed(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return ", " + strings.Join(values, ", ")
}

func offset(fset *token.FileSet, pos token.Pos) int { return fset.Position(pos).Offset }

func resultsNamed(results *ast.FieldList) []string {
	var names []string
	if results == nil {
		return nil
	}
	for _, field := range results.List {
		for _, name := range field.Names {
			names = append(names, name.Name)
		}
	}
	return names
}

func endsWithReturn(body *ast.BlockStmt) bool {
	if len(body.List) == 0 {
		return false
	}
	_, ok := body.List[len(body.List)-1].(*ast.ReturnStmt)
	return ok
}

// walker visits the statements of one function body (not of nested literals),
// knowing which local variables are in scope, and rewrites its return statements.
type walker struct {
	fset        *token.FileSet
	data        []byte
	outs        []result
	resultNames []string
	edits       []edit
	top         []string // locals of the body's top level, for a fall-off-the-end return
}

func (w *walker) returnCall(line int, locals []string, results []string) string {
	quotedLocals := make([]string, len(locals))
	for i, l := range locals {
		quotedLocals[i] = strconv.Quote(l)
	}
	names := make([]string, len(w.outs))
	for i, r := range w.outs {
		names[i] = strconv.Quote(r.name)
	}
	return fmt.Sprintf("__at.Return(%d, []string{%s}, []any{%s}, []string{%s}, []any{%s})", line,
		strings.Join(quotedLocals, ", "), strings.Join(locals, ", "), strings.Join(names, ", "),
		strings.Join(results, ", "))
}

func declared(names []string, idents ...*ast.Ident) []string {
	for _, id := range idents {
		if id != nil && id.Name != "_" {
			names = append(names, id.Name)
		}
	}
	return names
}

func exprIdents(exprs ...ast.Expr) []*ast.Ident {
	var ids []*ast.Ident
	for _, e := range exprs {
		if id, ok := e.(*ast.Ident); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// block walks a statement list with the names in scope before it; returns the names after it.
func (w *walker) block(list []ast.Stmt, scope []string) []string {
	scope = append([]string(nil), scope...)
	for _, stmt := range list {
		scope = w.stmt(stmt, scope)
	}
	return scope
}

func (w *walker) stmt(stmt ast.Stmt, scope []string) []string {
	switch s := stmt.(type) {
	case *ast.AssignStmt:
		if s.Tok == token.DEFINE {
			return dedupe(declared(scope, exprIdents(s.Lhs...)...))
		}
	case *ast.DeclStmt:
		if gen, ok := s.Decl.(*ast.GenDecl); ok && gen.Tok == token.VAR {
			for _, spec := range gen.Specs {
				scope = declared(scope, spec.(*ast.ValueSpec).Names...)
			}
			return dedupe(scope)
		}
	case *ast.ReturnStmt:
		w.rewriteReturn(s, scope)
	case *ast.BlockStmt:
		w.nested(s.List, scope)
	case *ast.LabeledStmt:
		return w.stmt(s.Stmt, scope)
	case *ast.IfStmt:
		inner := scope
		if s.Init != nil {
			inner = w.stmt(s.Init, scope)
		}
		w.nested(s.Body.List, inner)
		if s.Else != nil {
			w.stmt(s.Else, inner)
		}
	case *ast.ForStmt:
		inner := scope
		if s.Init != nil {
			inner = w.stmt(s.Init, scope)
		}
		w.nested(s.Body.List, inner)
	case *ast.RangeStmt:
		inner := scope
		if s.Tok == token.DEFINE {
			inner = dedupe(declared(append([]string(nil), scope...), exprIdents(s.Key, s.Value)...))
		}
		w.nested(s.Body.List, inner)
	case *ast.SwitchStmt:
		inner := scope
		if s.Init != nil {
			inner = w.stmt(s.Init, scope)
		}
		for _, c := range s.Body.List {
			w.nested(c.(*ast.CaseClause).Body, inner)
		}
	case *ast.TypeSwitchStmt:
		inner := scope
		if s.Init != nil {
			inner = w.stmt(s.Init, scope)
		}
		if assign, ok := s.Assign.(*ast.AssignStmt); ok && assign.Tok == token.DEFINE {
			inner = dedupe(declared(append([]string(nil), inner...), exprIdents(assign.Lhs...)...))
		}
		for _, c := range s.Body.List {
			w.nested(c.(*ast.CaseClause).Body, inner)
		}
	case *ast.SelectStmt:
		for _, c := range s.Body.List {
			clause := c.(*ast.CommClause)
			inner := scope
			if clause.Comm != nil {
				inner = w.stmt(clause.Comm, scope)
			}
			w.nested(clause.Body, inner)
		}
	}
	return scope
}

// nested walks an inner block: what it declares is not in scope after it.
func (w *walker) nested(list []ast.Stmt, scope []string) {
	w.block(list, scope)
}

func dedupe(names []string) []string {
	seen := map[string]bool{}
	var out []string
	for i := len(names) - 1; i >= 0; i-- { // a later declaration shadows an earlier one
		if !seen[names[i]] {
			seen[names[i]] = true
			out = append([]string{names[i]}, out...)
		}
	}
	return out
}

func (w *walker) rewriteReturn(s *ast.ReturnStmt, scope []string) {
	line := w.fset.Position(s.Return).Line
	start := offset(w.fset, s.Return)
	keyword := start + len("return")
	if len(s.Results) == 0 {
		// A bare return: named results (if any) are what is returned, and visible here.
		w.edits = append(w.edits, edit{start, keyword, "{ " + w.returnCall(line, scope, w.resultNames) + "; return }"})
		return
	}
	var temps, decls []string
	for i, r := range w.outs {
		temp := fmt.Sprintf("__at_r%d", i)
		temps = append(temps, temp)
		decls = append(decls, fmt.Sprintf("var %s %s;", temp, r.typ))
	}
	joined := strings.Join(temps, ", ")
	w.edits = append(w.edits,
		edit{start, keyword, "{ " + strings.Join(decls, " ") + " " + joined + " ="},
		edit{offset(w.fset, s.End()), offset(w.fset, s.End()),
			"; " + w.returnCall(line, scope, temps) + "; return " + joined + " }"})
}

// mainEdits: `defer annotraceprobe.Stop()` first in func main of the package in dir.
func mainEdits(src, dir string) (string, edit, bool) {
	for _, parsed := range goFiles(src, dir) {
		fset, file := parsed.fset, parsed.file
		if file.Name.Name != "main" {
			continue
		}
		for _, decl := range file.Decls {
			if fn, ok := decl.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Name.Name == "main" && fn.Body != nil {
				at := offset(fset, fn.Body.Lbrace) + 1
				return parsed.path, edit{at, at, fmt.Sprintf(" defer %s.Stop();", probePackage)}, true
			}
		}
	}
	return "", edit{}, false
}

type parsedFile struct {
	path string
	data []byte
	fset *token.FileSet
	file *ast.File
}

// goFiles parses the non-test Go files of one package directory (those that parse).
func goFiles(src, dir string) []parsedFile {
	paths, _ := filepath.Glob(filepath.Join(src, dir, "*.go"))
	var files []parsedFile
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, data, parser.SkipObjectResolution)
		if err != nil {
			continue
		}
		files = append(files, parsedFile{path, data, fset, file})
	}
	return files
}
