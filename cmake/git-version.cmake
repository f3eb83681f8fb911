# Run at build time (not configure time), so the commit in `mailport --version`
# is the one the binary was built from. Writes OUT only when its text changes,
# so an unchanged commit rebuilds nothing.
#   cmake -DSRC=<source dir> -DOUT=<header> [-DCOMMIT=<sha>] -P git-version.cmake
# COMMIT wins (a container build has no .git: the Dockerfile passes REVISION).
if(NOT COMMIT)
  set(COMMIT unknown)
  find_program(GIT git)
  if(NOT GIT AND EXISTS ${SRC}/.git/HEAD)
    # No git installed (a fresh machine that got the tree some other way):
    # read the commit out of .git by hand, a branch ref or a detached HEAD.
    file(STRINGS ${SRC}/.git/HEAD head LIMIT_COUNT 1)
    if(head MATCHES "^ref: (.+)$")
      set(ref ${CMAKE_MATCH_1})
      if(EXISTS ${SRC}/.git/${ref})
        file(STRINGS ${SRC}/.git/${ref} head LIMIT_COUNT 1)
      elseif(EXISTS ${SRC}/.git/packed-refs)
        file(STRINGS ${SRC}/.git/packed-refs packed REGEX " ${ref}$")
        string(REGEX REPLACE " .*" "" head "${packed}")
      endif()
    endif()
    if(head MATCHES "^([0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])")
      set(COMMIT ${CMAKE_MATCH_1})
    endif()
  elseif(GIT)
    execute_process(COMMAND ${GIT} -C ${SRC} rev-parse --short=12 HEAD
                    OUTPUT_VARIABLE sha RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(rc EQUAL 0 AND sha)
      set(COMMIT ${sha})
      execute_process(COMMAND ${GIT} -C ${SRC} diff --quiet HEAD -- RESULT_VARIABLE dirty ERROR_QUIET)
      if(NOT dirty EQUAL 0)
        string(APPEND COMMIT "-dirty")
      endif()
    endif()
  endif()
endif()
file(CONFIGURE OUTPUT ${OUT} CONTENT "#define MAILPORT_GIT_COMMIT \"${COMMIT}\"\n" @ONLY)
