package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// Exit codes shared by all subcommands.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran but failed (request errors, timeout, I/O)
	exitUsage = 2 // bad command line
)

// command is one top-level subcommand. Each one parses its own flags so
// subcommands stay independent of each other.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"bench", "generate load against etcd-v3 endpoints; compare results", runBench},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: tests call it directly.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "cairnctl: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: cairnctl <command> [arguments]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, `Run "cairnctl <command> --help" for a command's usage.`)
}

// parseFlags parses args with fs, printing usage (via printUsage, which
// writes the flags section with fs.PrintDefaults) on stdout for --help and on
// stderr after a bad flag. ok is false when the caller should return code.
func parseFlags(fs *flag.FlagSet, args []string, printUsage func(io.Writer), stdout, stderr io.Writer) (ok bool, code int) {
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below, on the stream that fits the case
	err := fs.Parse(args)
	switch {
	case err == nil:
		return true, exitOK
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		printUsage(stdout)
		return false, exitOK
	default: // flag has already printed the error to stderr
		printUsage(stderr)
		return false, exitUsage
	}
}
