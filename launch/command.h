// command.h: subcommand registry. Each launch/cmd_*.cpp registers itself with ZT_COMMAND, so main
// stays a dispatcher and adding a subcommand touches one file.
#pragma once

namespace zt {

using CommandFn = int (*)(int argc, char** argv);  // argv[0] is the subcommand name

struct CommandRegistrar {
  CommandRegistrar(const char* name, const char* summary, CommandFn fn);
};

}  // namespace zt

#define ZT_COMMAND(name, summary, fn) \
  static ::zt::CommandRegistrar zt_command_registrar_##fn(name, summary, fn)
