// options.h: command-line parsing shared by every subcommand (Boost.Program_options).
// Every flag can also come from `--config FILE` (INI: `key = value`, names without dashes); the
// command line wins. Unknown flags, malformed values and unreadable config files raise zt::Error
// with one line naming the flag or file.
#pragma once
#include <boost/program_options.hpp>
#include <string>

namespace zt {

namespace po = boost::program_options;

// Parses argv (argv[0] is the subcommand name) against `groups` (each an options_description
// shown as one group by --help). Adds --help and --config. Returns false if --help was printed.
// A single-valued flag given more than once takes its last value.
bool parse_options(int argc, char** argv, const std::string& usage, po::options_description& groups,
                   po::variables_map& vm);

// Range checks that name the flag: "--heads must be >= 1 (got 0)".
void require_min(const po::variables_map& vm, const char* flag, double lo);
void require_range(const po::variables_map& vm, const char* flag, double lo, double hi);
void require_choice(const po::variables_map& vm, const char* flag,
                    std::initializer_list<const char*> choices);

}  // namespace zt
