# thaw_add_guest(<name> SOURCES <files...>)
#
# Builds a freestanding thaw function guest <name>.elf with the host gcc:
# no libc, no PIE, no red zone (the host may use the stack across exits),
# no AVX (the emulated backend lacks it), linked at THAW_IMAGE_BASE by
# guest.ld and against the guest SDK (thaw_guest_sdk).
set(THAW_GUEST_COMPILE_OPTIONS
  -ffreestanding -fno-pic -fno-pie -mno-red-zone -mno-avx -mno-avx2
  -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none
  -fno-tree-loop-distribute-patterns -O2 -g -Wall -Wextra -Werror)

function(thaw_guest_flags target)
  target_compile_options(${target} PRIVATE ${THAW_GUEST_COMPILE_OPTIONS})
endfunction()

function(thaw_add_guest name)
  cmake_parse_arguments(GUEST "" "" "SOURCES" ${ARGN})
  add_executable(${name} ${GUEST_SOURCES})
  thaw_guest_flags(${name})
  if(TARGET thaw_guest_sdk)
    set(sdk thaw_guest_sdk)
    get_target_property(script thaw_guest_sdk THAW_LINK_SCRIPT)
  else()
    set(sdk thaw::thaw_guest_sdk)
    get_target_property(script thaw::thaw_guest_sdk THAW_LINK_SCRIPT)
  endif()
  target_link_libraries(${name} PRIVATE ${sdk})
  target_link_options(${name} PRIVATE
    -nostdlib -static -no-pie -Wl,-T,${script} -Wl,--build-id=none
    -Wl,-z,noexecstack -Wl,-z,max-page-size=4096)
  target_link_libraries(${name} PRIVATE gcc)
  set_target_properties(${name} PROPERTIES SUFFIX ".elf" LINK_DEPENDS ${script})
endfunction()
