package main

import (
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// pflag stops at the first bad flag. The daemon and check-config report every problem at once
// instead (issue 10): each bad flag, each naming itself, together with what the rest of the
// command line and the file make of the configuration. reportAllFlagErrors installs that for both
// commands: when cobra's parse fails, the command line is parsed again, on fresh flag sets, each
// bad argument dropped in turn and its error kept, and the settings the good ones give are
// validated as the command would have.

// reportAllFlagErrors makes the daemon (root) and check-config report every flag error of args
// (what root is executed with), with the configuration's errors.
func reportAllFlagErrors(root *cobra.Command, args []string) {
	handler := func(c *cobra.Command, first error) error {
		_, cargs, err := root.Find(args)
		if err != nil {
			return configError{first}
		}
		errs, fs, fv, configPath := parseEveryFlag(cargs)
		if len(errs) == 0 { // parsed here: not expected; say what cobra said
			return configError{first}
		}
		if _, _, err := resolveFlags(fs, fv, configPath); err != nil {
			errs = append(errs, err)
		}
		return configError{errors.Join(errs...)}
	}
	root.SetFlagErrorFunc(handler)
	for _, c := range root.Commands() {
		if c.Name() == "check-config" {
			c.SetFlagErrorFunc(handler)
		}
	}
}

// parseEveryFlag parses args as the daemon's flags (registerFlags and --config), dropping each
// argument pflag refuses, and returns every refusal, with the flag set and values the rest give.
func parseEveryFlag(args []string) ([]error, *pflag.FlagSet, *flagValues, string) {
	args = slices.Clone(args)
	var errs []error
	for {
		fs := pflag.NewFlagSet("hacoord", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Usage = func() {}
		var configPath string
		fv := defaultFlagValues()
		fs.StringVar(&configPath, "config", "", "")
		registerFlags(fs, &fv)
		err := fs.Parse(args)
		if err == nil {
			return errs, fs, &fv, configPath
		}
		errs = append(errs, err)
		i, n := offending(err, args)
		if n == 0 {
			return errs, fs, &fv, configPath // cannot tell which: what was said must do
		}
		args = slices.Delete(args, i, i+n)
	}
}

// offending returns where the argument pflag refused with err is in args, and how many
// arguments it takes (the flag, and its value when given apart); 0 if it cannot tell.
func offending(err error, args []string) (int, int) {
	var (
		ne *pflag.NotExistError
		ve *pflag.ValueRequiredError
		ie *pflag.InvalidValueError
		se *pflag.InvalidSyntaxError
	)
	switch {
	case errors.As(err, &ne):
		return find(args, ne.GetSpecifiedName(), ne.GetSpecifiedShortnames(), nil)
	case errors.As(err, &ve):
		return find(args, ve.GetSpecifiedName(), ve.GetSpecifiedShortnames(), nil)
	case errors.As(err, &ie):
		f := ie.GetFlag()
		v := ie.GetValue()
		return find(args, f.Name, f.Shorthand, &v)
	case errors.As(err, &se):
		if i := slices.Index(args, se.GetSpecifiedFlag()); i >= 0 {
			return i, 1
		}
	}
	return 0, 0
}

// find returns the first argument naming flag name (--name, --name=v) or shorthand (-s, -sv, a
// group of shorthands holding s), with value v when v is given, and how many arguments it spans.
func find(args []string, name, short string, v *string) (int, int) {
	for i, a := range args {
		if a == "--" {
			break
		}
		if name != "" && (a == "--"+name || strings.HasPrefix(a, "--"+name+"=")) {
			switch {
			case v == nil:
				return i, 1
			case a == "--"+name+"="+*v:
				return i, 1
			case a == "--"+name && i+1 < len(args) && args[i+1] == *v:
				return i, 2
			}
			continue
		}
		if short != "" && len(a) > 1 && a[0] == '-' && a[1] != '-' && strings.Contains(a[1:], short) {
			switch {
			case v == nil:
				return i, 1
			case strings.HasSuffix(a, short+*v) || strings.HasSuffix(a, short+"="+*v):
				return i, 1
			case strings.HasSuffix(a, short) && i+1 < len(args) && args[i+1] == *v:
				return i, 2
			}
		}
	}
	return 0, 0
}
