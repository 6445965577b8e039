/* A dynamically linked program (PT_INTERP): what this build refuses. */
int main(void) { return 0; }
