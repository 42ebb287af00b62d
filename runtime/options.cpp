// options.cpp: Boost.Program_options glue with one-line errors.
#include "runtime/options.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <vector>

#include "runtime/error.h"

namespace zt {

namespace {

// Boost.Program_options (1.74) formats its errors by replacing placeholders such as %value% with
// the offending text in a loop until none is left: a flag or value that itself holds one makes
// that loop endless (found by tests/fuzz/fuzz_config.cpp). No real flag or path holds them, so
// they are refused before the parser sees them.
void refuse_placeholders(const std::string& text, const std::string& where) {
  for (const char* p : {"%option%", "%value%", "%prefix%", "%original_token%", "%canonical_option%",
                        "%invalid_line%"})
    if (text.find(p) != std::string::npos)
      fail(where, " holds '", p, "', which zerotrain does not accept in flags or values");
}

}  // namespace

bool parse_options(int argc, char** argv, const std::string& usage, po::options_description& groups,
                   po::variables_map& vm, const std::string& epilog) {
  for (int i = 1; i < argc; ++i) refuse_placeholders(argv[i], cat("argument '", argv[i], "'"));
  po::options_description common("General");
  common.add_options()("help,h", "show this help and exit")(
      "config", po::value<std::string>(), "read flags from an INI file (key = value)");
  po::options_description all;
  all.add(common).add(groups);
  try {
    po::parsed_options parsed = po::command_line_parser(argc, argv).options(all).run();
    // A single-valued flag given more than once: the last one counts (as in argparse-based
    // launchers, so a script can append overrides to a common flag set).
    std::vector<po::option> kept;
    for (size_t i = 0; i < parsed.options.size(); ++i) {
      const po::option& o = parsed.options[i];
      const po::option_description* d = all.find_nothrow(o.string_key, false);
      bool later = false;
      if (d && d->semantic()->max_tokens() <= 1)
        for (size_t j = i + 1; j < parsed.options.size() && !later; ++j)
          later = parsed.options[j].string_key == o.string_key;
      if (!later) kept.push_back(o);
    }
    parsed.options = std::move(kept);
    po::store(parsed, vm);
    if (vm.count("help")) {
      std::cout << usage << "\n" << all << "\n";
      if (!epilog.empty()) std::cout << epilog << "\n";
      return false;
    }
    if (vm.count("config")) {
      std::string path = vm["config"].as<std::string>();
      std::ifstream file(path);
      if (!file) fail("cannot read --config file '", path, "'");
      const std::string text{std::istreambuf_iterator<char>(file), {}};
      refuse_placeholders(text, cat("--config file '", path, "'"));
      std::istringstream in(text);
      try {
        po::store(po::parse_config_file(in, all, /*allow_unregistered=*/false), vm);
      } catch (const po::error& e) {
        fail("in --config file '", path, "': ", e.what());
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    fail(e.what());
  }
  return true;
}

std::string show_number(double x) {
  char b[48];
  if (x != 0 && std::fabs(x) < 1e-2) {
    std::snprintf(b, sizeof b, "%.5e", x);  // d.ddddde-XX
    std::string s = b;
    const size_t e = s.find('e');
    std::string mant = s.substr(0, e);
    while (!mant.empty() && mant.back() == '0') mant.pop_back();
    if (!mant.empty() && mant.back() == '.') mant.pop_back();
    return mant + "e" + std::to_string(std::stoi(s.substr(e + 1)));
  }
  std::snprintf(b, sizeof b, "%.6g", x);
  return b;
}

static double as_number(const po::variables_map& vm, const char* flag) {
  const auto& v = vm[flag].value();
  if (auto p = boost::any_cast<int>(&v)) return *p;
  if (auto p = boost::any_cast<int64_t>(&v)) return (double)*p;
  if (auto p = boost::any_cast<float>(&v)) return *p;
  if (auto p = boost::any_cast<double>(&v)) return *p;
  fail("internal: flag --", flag, " is not numeric");
}

void require_min(const po::variables_map& vm, const char* flag, double lo) {
  if (!vm.count(flag)) return;
  double x = as_number(vm, flag);
  if (!(x >= lo)) fail("--", flag, " must be >= ", lo, " (got ", x, ")");
}

void require_range(const po::variables_map& vm, const char* flag, double lo, double hi) {
  if (!vm.count(flag)) return;
  double x = as_number(vm, flag);
  if (!(x >= lo && x <= hi)) fail("--", flag, " must be in [", lo, ", ", hi, "] (got ", x, ")");
}

void require_choice(const po::variables_map& vm, const char* flag,
                    std::initializer_list<const char*> choices) {
  if (!vm.count(flag)) return;
  std::string v = vm[flag].as<std::string>();
  std::string list;
  for (const char* c : choices) {
    if (v == c) return;
    if (!list.empty()) list += '|';
    list += c;
  }
  fail("--", flag, " must be one of ", list, " (got '", v, "')");
}

}  // namespace zt
