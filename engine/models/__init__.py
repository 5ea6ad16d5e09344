"""What a checkpoint is: the catalog, family adapters, repositories' published facts, twins, the owner's files."""
