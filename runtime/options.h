// options.h: command-line parsing shared by every subcommand (Boost.Program_options).
// Every flag can also come from `--config FILE` (INI: `key = value`, names without dashes); the
// command line wins. Unknown flags, malformed values and unreadable config files raise zt::Error
// with one line naming the flag or file.
#pragma once
#include <boost/program_options.hpp>
#include <string>
#include <type_traits>

namespace zt {

namespace po = boost::program_options;

// Parses argv (argv[0] is the subcommand name) against `groups` (each an options_description
// shown as one group by --help). Adds --help and --config. Returns false if --help was printed.
// A single-valued flag given more than once takes its last value.
// `epilog` (examples) follows the flags in --help.
bool parse_options(int argc, char** argv, const std::string& usage, po::options_description& groups,
                   po::variables_map& vm, const std::string& epilog = "");

// A number as a user writes it: at most 6 significant digits, exponent form below 0.01 ("3e-3",
// "0.9", "1e-8", "65536").
std::string show_number(double x);

// po::value(v) with *v as the default, shown as show_number shows it (Boost alone prints a
// float's every digit: 0.899999976).
template <typename T>
po::typed_value<T>* with_default(T* v) {
  if constexpr (std::is_floating_point_v<T>)
    return po::value(v)->default_value(*v, show_number((double)*v));
  else
    return po::value(v)->default_value(*v);
}

// Range checks that name the flag: "--heads must be >= 1 (got 0)".
void require_min(const po::variables_map& vm, const char* flag, double lo);
void require_range(const po::variables_map& vm, const char* flag, double lo, double hi);
void require_choice(const po::variables_map& vm, const char* flag,
                    std::initializer_list<const char*> choices);

}  // namespace zt
