"""tf.distribute strategies and DTensor meshes with layout maps."""
