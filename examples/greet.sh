#!/bin/sh
# Prints a greeting built from the first argument.
echo "$1 from a kiln build"
