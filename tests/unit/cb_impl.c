/* The implementation, compiled as C, for test_cpp_compile.cpp to link against. */
#define CB_IMPLEMENTATION
#include "cb.h"
