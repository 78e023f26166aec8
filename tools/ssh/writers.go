package ssh

import (
	"net/url"
	"path"
	"strings"
)

// writer describes a program that writes files named in its arguments, so
// shell.writes_files lists them beside the targets of redirections. Each is
// a named entry with its own tests. Every argument of a writer must be a
// literal: a name known only at run time, or a glob that could expand to an
// option, is refused (construct dynamic-write).
type writer struct {
	// options are the options that matter for finding the operands and the
	// files; unknown options are taken as flags (GNU getopt order: options
	// may follow operands until "--").
	options []option
	// files returns what the program writes, given its options and operands.
	files func(p *parsed) writes
	// scan, for programs with too many options to list (curl, wget,
	// rsync, journalctl), looks at every argument instead: a value that
	// merely looks like an output option over-reports, never misses.
	scan func(args []string) writes
}

// writes is what a writer's arguments say it writes, or why the command is
// refused.
type writes struct {
	files   []string
	refuse  string // construct id, when the arguments cannot be followed
	because string // the detail for the refusal
}

func wrote(files ...string) writes { return writes{files: files} }

func refusedWrite(id, because string) writes { return writes{refuse: id, because: because} }

// operands returns the texts of the operands.
func (p *parsed) texts() []string { return texts(p.operands) }

// allOperands writes every operand.
func allOperands(p *parsed) writes { return wrote(p.texts()...) }

// targetOrLast writes -t DIR when given, else the last of two or more
// operands (cp, install, ln).
func targetOrLast(p *parsed) writes {
	if t, ok := p.last("target-directory"); ok {
		return wrote(t)
	}
	ops := p.texts()
	if len(ops) < 2 {
		return writes{}
	}
	return wrote(ops[len(ops)-1])
}

// ownerThenFiles writes every operand after the first (the mode of chmod,
// the owner of chown), or every operand with --reference.
func ownerThenFiles(p *parsed) writes {
	ops := p.texts()
	if p.has("reference") {
		return wrote(ops...)
	}
	if len(ops) < 2 {
		return writes{}
	}
	return wrote(ops[1:]...)
}

var backupOptions = opts("b", "backup[=]", "S:|suffix=", "t:|target-directory=", "T|no-target-directory")

// writers are the programs that write through their arguments.
var writers = map[string]writer{
	"tee": {options: opts("a|append", "i|ignore-interrupts", "p", "output-error[=]"), files: allOperands},
	"cp": {options: append(opts("a|archive", "preserve[=]", "no-preserve=", "reflink[=]", "sparse=", "context[=]"), backupOptions...),
		files: targetOrLast},
	"mv": {options: append(opts("update[=]", "context[=]"), backupOptions...), files: func(p *parsed) writes {
		// mv removes its sources and writes the destination.
		w := wrote(p.texts()...)
		if t, ok := p.last("target-directory"); ok {
			w.files = append(w.files, t)
		}
		return w
	}},
	"install": {options: append(opts("d|directory", "g:|group=", "m:|mode=", "o:|owner=", "strip-program=", "context[=]"), backupOptions...),
		files: func(p *parsed) writes {
			if p.has("strip-program") {
				return refusedWrite("runs-command-option", "install --strip-program")
			}
			if p.has("directory") {
				return allOperands(p)
			}
			return targetOrLast(p)
		}},
	"ln": {options: backupOptions, files: func(p *parsed) writes {
		if t, ok := p.last("target-directory"); ok {
			return wrote(t)
		}
		ops := p.texts()
		switch len(ops) {
		case 0:
			return writes{}
		case 1:
			return wrote("./" + path.Base(ops[0])) // a link in the current directory
		}
		return wrote(ops[len(ops)-1])
	}},
	"dd": {scan: func(args []string) writes {
		var w writes
		for _, a := range args {
			if f, ok := strings.CutPrefix(a, "of="); ok {
				w.files = append(w.files, f)
			}
		}
		return w
	}},
	"sed": {options: opts("e:|expression=", "f:|file=", "i::|in-place[=]", "l:|line-length=", "s|separate", "sandbox",
		"n|quiet", "silent", "E|regexp-extended", "r", "z|null-data", "u|unbuffered", "debug", "posix", "follow-symlinks"),
		files: func(p *parsed) writes {
			if !p.has("in-place") {
				return writes{} // see docs/ssh.md: sed's w and e commands are not followed
			}
			ops := p.texts()
			if !p.has("expression") && !p.has("file") && len(ops) > 0 {
				ops = ops[1:] // the first operand is the script
			}
			return wrote(ops...)
		}},
	"truncate": {options: opts("c|no-create", "o|io-blocks", "r:|reference=", "s:|size="), files: allOperands},
	"touch":    {options: opts("a", "c|no-create", "d:|date=", "f", "h|no-dereference", "m", "r:|reference=", "t:", "time="), files: allOperands},
	"mkdir":    {options: opts("m:|mode=", "p|parents", "v|verbose", "Z", "context[=]"), files: allOperands},
	"rmdir":    {options: opts("ignore-fail-on-non-empty", "p|parents", "v|verbose"), files: allOperands},
	"rm": {options: opts("f|force", "i", "I", "interactive[=]", "one-file-system", "no-preserve-root", "preserve-root[=]",
		"r|recursive", "R", "d|dir", "v|verbose"), files: allOperands},
	"unlink": {files: allOperands},
	"shred": {options: opts("f|force", "n:|iterations=", "random-source=", "s:|size=", "u", "remove[=]", "v|verbose", "x|exact", "z|zero"),
		files: allOperands},
	"chmod": {options: opts("c|changes", "f|silent", "quiet", "v|verbose", "no-preserve-root", "preserve-root", "reference=", "R|recursive"),
		files: ownerThenFiles},
	"chown": {options: opts("c|changes", "f|silent", "quiet", "v|verbose", "dereference", "h|no-dereference", "from=", "no-preserve-root",
		"preserve-root", "reference=", "R|recursive", "H", "L", "P"), files: ownerThenFiles},
	"chgrp": {options: opts("c|changes", "f|silent", "quiet", "v|verbose", "dereference", "h|no-dereference", "no-preserve-root",
		"preserve-root", "reference=", "R|recursive", "H", "L", "P"), files: ownerThenFiles},
	"sort": {options: opts("o:|output=", "compress-program=", "T:|temporary-directory=", "k:|key=", "t:|field-separator=",
		"S:|buffer-size=", "parallel=", "batch-size=", "files0-from=", "random-source=", "sort=", "check[=]", "c", "C"),
		files: func(p *parsed) writes {
			if p.has("compress-program") {
				return refusedWrite("runs-command-option", "sort --compress-program")
			}
			if o, ok := p.last("output"); ok {
				return wrote(o)
			}
			return writes{}
		}},
	"uniq": {options: opts("f:|skip-fields=", "s:|skip-chars=", "w:|check-chars=", "all-repeated[=]", "group[=]"),
		files: func(p *parsed) writes {
			var ops []string
			for _, o := range p.texts() {
				if !obsoleteSkip(o) { // "+N": the old form of -s N
					ops = append(ops, o)
				}
			}
			if len(ops) >= 2 {
				return wrote(ops[1]) // uniq [INPUT [OUTPUT]]
			}
			return writes{}
		}},
	"split": {options: opts("a:|suffix-length=", "additional-suffix=", "b:|bytes=", "C:|line-bytes=", "l:|lines=", "n:|number=",
		"t:|separator=", "filter=", "d", "numeric-suffixes[=]", "x", "hex-suffixes[=]", "e|elide-empty-files", "u|unbuffered", "verbose"),
		files: func(p *parsed) writes {
			if p.has("filter") {
				return refusedWrite("runs-command-option", "split --filter")
			}
			if ops := p.texts(); len(ops) >= 2 {
				return wrote(ops[1]) // files named PREFIXaa, PREFIXab, ...
			}
			return wrote("x")
		}},
	"tar":   {scan: tarWrites},
	"curl":  {scan: curlWrites},
	"wget":  {scan: wgetWrites},
	"rsync": {scan: rsyncWrites},
	"journalctl": {scan: func(args []string) writes {
		var w writes
		for i, a := range args {
			name, v, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") {
				continue
			}
			switch {
			case prefixOfAny(name, "cursor-file"):
				if !hasValue && i+1 < len(args) {
					v = args[i+1]
				}
				w.files = append(w.files, v)
			case prefixOfAny(name, "vacuum-size", "vacuum-time", "vacuum-files", "rotate", "flush", "sync",
				"relinquish-var", "smart-relinquish-var", "setup-keys", "update-catalog"):
				w.files = append(w.files, "/var/log/journal")
			}
		}
		return w
	}},
	"ss": {scan: func(args []string) writes {
		// ss -D FILE / --diag=FILE dumps raw socket information to a file.
		var w writes
		for i, a := range args {
			next := ""
			if i+1 < len(args) {
				next = args[i+1]
			}
			if name, v, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "="); strings.HasPrefix(a, "--") {
				if prefixOfAny(name, "diag") {
					if !hasValue {
						v = next
					}
					w.files = append(w.files, v)
				}
				continue
			}
			if _, rest, ok := strings.Cut(a, "D"); ok && strings.HasPrefix(a, "-") {
				if rest == "" {
					rest = next
				}
				w.files = append(w.files, rest)
			}
		}
		return w
	}},
	"gzip":     {scan: compressorWrites},
	"gunzip":   {scan: compressorWrites},
	"bzip2":    {scan: compressorWrites},
	"bunzip2":  {scan: compressorWrites},
	"xz":       {scan: compressorWrites},
	"unxz":     {scan: compressorWrites},
	"zstd":     {scan: compressorWrites},
	"unzstd":   {scan: compressorWrites},
	"lz4":      {scan: compressorWrites},
	"compress": {scan: compressorWrites},
	"unzip": {options: opts("d:", "l", "t", "v", "p", "Z", "z", "x:"), files: func(p *parsed) writes {
		if p.has("l") || p.has("t") || p.has("v") || p.has("p") || p.has("Z") || p.has("z") {
			return writes{}
		}
		if d, ok := p.last("d"); ok {
			return wrote(d)
		}
		return wrote(".")
	}},
	"zip": {options: opts("b:", "n:", "t:", "tt:", "x:", "i:", "P:", "Z:"), files: func(p *parsed) writes {
		if ops := p.texts(); len(ops) > 0 {
			return wrote(ops[0])
		}
		return writes{}
	}},
	"patch": {options: opts("o:|output=", "dry-run", "i:|input=", "p:|strip=", "d:|directory=", "B:|prefix=", "r:|reject-file=",
		"D:|ifdef=", "F:|fuzz=", "V:|version-control=", "Y:|basename-prefix=", "z:|suffix=", "reject-format=", "quoting-style="),
		files: func(p *parsed) writes {
			var w writes
			if r, ok := p.last("reject-file"); ok {
				w.files = append(w.files, r)
			}
			switch o, ok := p.last("output"); {
			case p.has("dry-run"):
				return writes{}
			case ok:
				w.files = append(w.files, o)
			case len(p.operands) > 0:
				w.files = append(w.files, p.operands[0].text)
			default:
				return refusedWrite("dynamic-write", "patch writes the files its input names; give the file to patch, or -o")
			}
			return w
		}},
	"sponge": {options: opts("a"), files: allOperands},
	"mkfifo": {options: opts("m:|mode=", "Z", "context[=]"), files: allOperands},
	"mknod": {options: opts("m:|mode=", "Z", "context[=]"), files: func(p *parsed) writes {
		if ops := p.texts(); len(ops) > 0 {
			return wrote(ops[0])
		}
		return writes{}
	}},
	"mktemp": {options: opts("d|directory", "u|dry-run", "q|quiet", "suffix=", "p:", "tmpdir[=]", "t"), files: func(p *parsed) writes {
		if p.has("dry-run") {
			return writes{}
		}
		dir := "/tmp"
		if d, ok := p.last("p"); ok {
			dir = d
		} else if d, ok := p.last("tmpdir"); ok && d != "" {
			dir = d
		}
		if ops := p.texts(); len(ops) > 0 {
			if p.has("p") || p.has("tmpdir") || p.has("t") {
				return wrote(path.Join(dir, ops[0]))
			}
			return wrote(ops[0])
		}
		return wrote(path.Join(dir, "tmp.XXXXXXXXXX"))
	}},
	// Editors write the files they open.
	"ed":   {files: allOperands},
	"ex":   {options: opts("c:", "S:", "u:", "i:", "T:", "w:"), files: allOperands},
	"vi":   {options: opts("c:", "S:", "u:", "i:", "T:", "w:"), files: allOperands},
	"vim":  {options: opts("c:", "S:", "u:", "i:", "T:", "w:"), files: allOperands},
	"nano": {options: opts("o:|operatingdir=", "Y:|syntax=", "r:|fill=", "T:|tabsize="), files: allOperands},
}

// writes records what a writer's arguments write, refusing arguments that
// are not literals.
func (w *walker) writes(name string, wr writer, args []arg) {
	for _, a := range args[1:] {
		if !a.static {
			w.refuse("dynamic-write", a.word)
			return
		}
	}
	var got writes
	if wr.scan != nil {
		got = wr.scan(texts(args[1:]))
	} else {
		p, ok := w.parseOptions(name, wr.options, args[1:], parseMode{permute: true})
		if !ok {
			return
		}
		got = wr.files(p)
	}
	if got.refuse != "" {
		w.refuseText(got.refuse, got.because)
		return
	}
	for _, f := range got.files {
		// "-" is a file named "-" to most programs (tee -, sort -o -); the
		// scanners that read it as standard output leave it out themselves.
		if f != "" {
			w.sh.WritesFiles = appendUnique(w.sh.WritesFiles, f)
		}
	}
}

// obsoleteSkip reports "+N", the POSIX-1 form of an option (uniq +N, sort +N).
func obsoleteSkip(s string) bool {
	return len(s) > 1 && s[0] == '+' && strings.Trim(s[1:], "0123456789") == ""
}

// compressorWrites: gzip and friends replace each file operand with its
// compressed (or decompressed) form, unless they write to stdout or only
// test or list.
func compressorWrites(args []string) writes {
	var files []string
	for _, a := range args {
		switch {
		case a == "--stdout" || a == "--to-stdout" || a == "--test" || a == "--list":
			return writes{}
		case strings.HasPrefix(a, "--"):
		case strings.HasPrefix(a, "-") && len(a) > 1:
			if strings.ContainsAny(a[1:], "ctl") {
				return writes{}
			}
		default:
			files = append(files, a)
		}
	}
	return wrote(files...)
}

// tarOptionsWithValue are tar's short options that take the next argument.
const tarOptionsWithValue = "bCfFgHIKLNTVX"

// tarWrites follows tar: creating, appending or updating writes the archive
// (-f, standard output by default), extracting writes under the -C
// directories (the current one by default), --remove-files removes the
// operands. Options that run commands are refused.
func tarWrites(args []string) writes {
	// The old form "tar xzf a.tgz": the first word is a run of letters.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		expanded := []string{}
		rest := args[1:]
		for _, c := range args[0] {
			expanded = append(expanded, "-"+string(c))
			if strings.ContainsRune(tarOptionsWithValue, c) && len(rest) > 0 {
				expanded, rest = append(expanded, rest[0]), rest[1:]
			}
		}
		args = append(expanded, rest...)
	}
	var (
		archive           = "-"
		dirs, operands    []string
		writesArchive     bool
		extracts, removes bool
		files             []string
	)
	for i := 0; i < len(args); i++ {
		a := args[i]
		valueOf := func() string {
			if _, v, ok := strings.Cut(a, "="); ok {
				return v
			}
			if i+1 < len(args) {
				i++
				return args[i]
			}
			return ""
		}
		if strings.HasPrefix(a, "--") {
			name, _, _ := strings.Cut(a[2:], "=")
			switch {
			case prefixOfAny(name, "to-command", "checkpoint-action", "use-compress-program", "rsh-command", "info-script", "new-volume-script", "rmt-command"):
				return refusedWrite("runs-command-option", "tar --"+name)
			case prefixOfAny(name, "file"):
				archive = valueOf()
			case prefixOfAny(name, "directory"):
				dirs = append(dirs, valueOf())
			case prefixOfAny(name, "create", "append", "update", "catenate", "concatenate", "delete"):
				writesArchive = true
			case prefixOfAny(name, "extract", "get"):
				extracts = true
			case prefixOfAny(name, "remove-files"):
				removes = true
			case prefixOfAny(name, "index-file", "listed-incremental", "volno-file"):
				files = append(files, valueOf())
			}
			continue
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			operands = append(operands, a)
			continue
		}
		for j := 1; j < len(a); j++ {
			c := a[j]
			var v string
			if strings.IndexByte(tarOptionsWithValue, c) >= 0 {
				if v = a[j+1:]; v == "" && i+1 < len(args) {
					i++
					v = args[i]
				}
			}
			switch c {
			case 'I', 'F':
				return refusedWrite("runs-command-option", "tar -"+string(c))
			case 'f':
				archive = v
			case 'C':
				dirs = append(dirs, v)
			case 'c', 'r', 'u', 'A':
				writesArchive = true
			case 'x':
				extracts = true
			case 'g':
				files = append(files, v)
			}
			if v != "" || strings.IndexByte(tarOptionsWithValue, c) >= 0 {
				break
			}
		}
	}
	if writesArchive && archive != "-" {
		files = append(files, archive)
	}
	if extracts {
		if len(dirs) == 0 {
			dirs = []string{"."}
		}
		files = append(files, dirs...)
	}
	if removes {
		files = append(files, operands...)
	}
	return wrote(files...)
}

// curlWrites follows curl's output options: every argument is looked at, so
// a value that looks like an option over-reports rather than hides a write.
func curlWrites(args []string) writes {
	var files []string
	remoteName := false
	var urls []string
	for i, a := range args {
		next := ""
		if i+1 < len(args) {
			next = args[i+1]
		}
		if strings.HasPrefix(a, "--") {
			name, v, hasValue := strings.Cut(a[2:], "=")
			if !hasValue {
				v = next
			}
			switch {
			case prefixOfAny(name, "config"):
				return refusedWrite("runs-command-option", "curl --config reads options from a file")
			case prefixOfAny(name, "output", "dump-header", "cookie-jar", "trace", "trace-ascii", "stderr", "libcurl",
				"etag-save", "hsts", "alt-svc", "output-dir"):
				files = append(files, v)
			case prefixOfAny(name, "remote-name", "remote-name-all", "remote-header-name"):
				remoteName = true
			}
			continue
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'K':
					return refusedWrite("runs-command-option", "curl -K reads options from a file")
				case 'o', 'D', 'c':
					if v := a[j+1:]; v != "" {
						files = append(files, v)
					} else {
						files = append(files, next)
					}
				case 'O', 'J':
					remoteName = true
				}
			}
			continue
		}
		urls = append(urls, a)
	}
	files = withoutStdout(files)
	if remoteName {
		for _, u := range urls {
			name, ok := urlBase(u)
			if !ok {
				return refusedWrite("dynamic-write", "curl -O names the file after the URL "+u)
			}
			files = append(files, name)
		}
	}
	return wrote(files...)
}

// wgetWrites follows wget, which writes every download to a file named after
// the URL unless -O says otherwise.
func wgetWrites(args []string) writes {
	var files, urls []string
	document, dir, recursive := "", "", false
	skip := false
	for i, a := range args {
		if skip {
			skip = false
			continue
		}
		next := ""
		if i+1 < len(args) {
			next = args[i+1]
		}
		if strings.HasPrefix(a, "--") {
			name, v, hasValue := strings.Cut(a[2:], "=")
			if !hasValue {
				v = next
			}
			switch {
			case prefixOfAny(name, "execute", "config", "input-file", "use-askpass"):
				return refusedWrite("runs-command-option", "wget --"+name)
			case prefixOfAny(name, "output-document"):
				document = v
			case prefixOfAny(name, "output-file", "append-output", "save-cookies", "warc-file", "rejected-log", "hsts-file"):
				files = append(files, v)
			case prefixOfAny(name, "directory-prefix"):
				dir = v
			case prefixOfAny(name, "recursive", "mirror", "page-requisites"):
				recursive = true
			}
			continue
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			for j := 1; j < len(a); j++ {
				v := a[j+1:]
				if v == "" {
					v = next
				}
				switch a[j] {
				case 'e', 'i':
					return refusedWrite("runs-command-option", "wget -"+string(a[j]))
				case 'O', 'o', 'a', 'P':
					switch a[j] {
					case 'O':
						document = v
					case 'P':
						dir = v
					default:
						files = append(files, v)
					}
					skip = a[j+1:] == ""
					j = len(a)
				case 'r', 'm', 'p':
					recursive = true
				}
			}
			continue
		}
		urls = append(urls, a)
	}
	switch {
	case document == "-":
	case document != "":
		files = append(files, document)
	case recursive:
		files = append(files, path.Join(dirOr(dir), ""))
		files = withoutStdout(files)
	default:
		for _, u := range urls {
			name, ok := urlBase(u)
			if !ok {
				name = "index.html"
			}
			files = append(files, path.Join(dirOr(dir), name))
		}
	}
	return wrote(files...)
}

// withoutStdout drops "-", which curl reads as standard output.
func withoutStdout(files []string) []string {
	out := files[:0]
	for _, f := range files {
		if f != "-" {
			out = append(out, f)
		}
	}
	return out
}

func dirOr(dir string) string {
	if dir == "" {
		return "."
	}
	return dir
}

// urlBase is the last path segment of a URL, the name curl -O and wget give
// the file.
func urlBase(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false
	}
	base := path.Base(u.Path)
	if base == "" || base == "." || base == "/" {
		return "", false
	}
	return base, true
}

// rsyncWrites follows rsync: with two or more operands it writes to the
// last; every operand after the first counts, so a value of an option the
// scan does not know over-reports. Options that run commands are refused.
func rsyncWrites(args []string) writes {
	var operands, files []string
	removeSources := false
	for _, a := range args {
		if strings.HasPrefix(a, "--") {
			name, v, _ := strings.Cut(a[2:], "=")
			switch {
			case prefixOfAny(name, "rsh", "rsync-path"):
				return refusedWrite("runs-command-option", "rsync --"+name)
			case prefixOfAny(name, "log-file", "write-batch", "only-write-batch", "backup-dir", "temp-dir", "partial-dir"):
				files = append(files, v)
			case prefixOfAny(name, "remove-source-files"):
				removeSources = true
			}
			continue
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			if strings.ContainsRune(a[1:], 'e') {
				return refusedWrite("runs-command-option", "rsync -e")
			}
			continue
		}
		operands = append(operands, a)
	}
	if len(operands) >= 2 {
		files = append(files, operands[1:]...)
		if removeSources {
			files = append(files, operands[0])
		}
	}
	return wrote(files...)
}
