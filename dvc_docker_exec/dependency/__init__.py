"""Where provenance meets DVC: the image as a dependency of a stage (like dvc/dependency/). See docs/architecture.md."""
