package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/cairn-kv/cairn/internal/gctune"
)

// Exit codes shared by all subcommands.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran but failed (request errors, timeout, I/O)
	exitUsage = 2 // bad command line
)

// newRootCommand is cairnctl's command tree. cobra gives the tree, help and flag
// parsing the etcd tools' users know (etcdctl and etcdutl are cobra programs, and the
// snapshot commands take etcdutl's flags); bench keeps its own flag sets, so cobra hands
// it the raw arguments.
func newRootCommand(stdout, stderr io.Writer, code *int) *cobra.Command {
	root := &cobra.Command{
		Use:           "cairnctl",
		Short:         "Cairn's operator tool",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(&cobra.Command{
		Use:                "bench",
		Short:              "generate load against etcd-v3 endpoints; compare results",
		DisableFlagParsing: true,
		Run:                func(_ *cobra.Command, args []string) { *code = runBench(args, stdout, stderr) },
	})
	root.AddCommand(newSnapshotCommand(stdout, stderr))
	return root
}

func main() {
	if gctune.Enabled(os.Environ()) {
		// As in the server: bench's load generator shares the CPU with the member it
		// measures, and collecting its tiny heap every few MiB cost it 5% of its CPU
		// under put-100.
		go gctune.Run(context.Background())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: tests call it directly.
func run(args []string, stdout, stderr io.Writer) int {
	code := exitOK
	root := newRootCommand(stdout, stderr, &code)
	root.SetArgs(args)
	if len(args) == 0 {
		root.SetOut(stderr)
		_ = root.Usage()
		return exitUsage
	}
	cmd, err := root.ExecuteC()
	switch {
	case err == nil:
		return code
	case errors.As(err, new(*exitError)):
		fmt.Fprintf(stderr, "cairnctl: %v\n", err)
		return exitFail
	default: // an unknown command or a bad flag
		fmt.Fprintf(stderr, "cairnctl: %v\n\n", err)
		cmd.SetOut(stderr)
		_ = cmd.Usage()
		return exitUsage
	}
}

// exitError is a command that ran and failed (exitFail), as opposed to a bad command
// line (exitUsage).
type exitError struct{ err error }

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// failed marks err as the failure of a command that ran.
func failed(err error) error {
	if err == nil {
		return nil
	}
	return &exitError{err}
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
