// backend.h: what the Communicator backends share; not for callers of comm.h.
#pragma once
#include <memory>
#include <span>

#include "parallel/comm/comm.h"

namespace zt {

// zt::Error naming the operation and communicator when the arguments do not fit it.
void check_reducible(const Communicator& c, const char* what, DType dt);
void check_counts(const Communicator& c, const char* what, std::span<const size_t> counts);
void check_peer(const Communicator& c, const char* what, int peer);
size_t sum_counts(std::span<const size_t> counts);

// The MPI world communicator (mpi_backend.cpp); needs MPI initialised by a ProcessContext.
std::unique_ptr<Communicator> make_mpi_world_communicator();

}  // namespace zt
