"""Search storage: documents (full-text), embedding chunks (pgvector) and per-user embedding
sets; the HNSW index of the default model (all-MiniLM-L6-v2, 384 dimensions).

The `vector` extension is created by jobs' first migration. The HNSW index is a partial
expression index (search/indexes.py explains why); its SQL is written out here, as
search.indexes.hnsw_index_sql gave it when this migration was made, so later code changes do
not change what this migration does.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
import pgvector.django.vector
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("jobs", "0001_vector_extension"),
        ("jobs", "0009_quota_scope_per_mailbox"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Embedding",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model", models.CharField(max_length=200)),
                ("dims", models.PositiveIntegerField()),
                ("chunk", models.PositiveSmallIntegerField()),
                ("content_hash", models.CharField(max_length=32)),
                ("text", models.TextField()),
                ("vector", pgvector.django.vector.VectorField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "interaction",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="jobs.interaction",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["user", "model", "dims"], name="embedding_user_space_idx")
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("interaction", "model", "dims", "chunk"),
                        name="embedding_chunk_uniq",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="EmbeddingSet",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("model", models.CharField(max_length=200)),
                ("dims", models.PositiveIntegerField()),
                ("provider_settings", models.JSONField(default=dict)),
                (
                    "status",
                    models.CharField(
                        choices=[("building", "building"), ("complete", "complete")],
                        default="building",
                        max_length=16,
                    ),
                ),
                ("completed_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user", "model", "dims"), name="embedding_set_uniq"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="SearchDocument",
            fields=[
                (
                    "interaction",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="+",
                        serialize=False,
                        to="jobs.interaction",
                    ),
                ),
                ("subject", models.TextField(blank=True)),
                ("body", models.TextField(blank=True)),
                ("content_hash", models.CharField(max_length=32)),
                (
                    "search_vector",
                    models.GeneratedField(
                        db_persist=True,
                        expression=django.contrib.postgres.search.CombinedSearchVector(
                            django.contrib.postgres.search.SearchVector(
                                "subject", config="english", weight="A"
                            ),
                            "||",
                            django.contrib.postgres.search.SearchVector(
                                "body", config="english", weight="B"
                            ),
                            django.contrib.postgres.search.SearchConfig("english"),
                        ),
                        output_field=django.contrib.postgres.search.SearchVectorField(),
                    ),
                ),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [
                    django.contrib.postgres.indexes.GinIndex(
                        fields=["search_vector"], name="search_document_tsv_idx"
                    ),
                    models.Index(fields=["user"], name="search_document_user_idx"),
                ],
            },
        ),
        migrations.CreateModel(
            name="InteractionSearch",
            fields=[],
            options={
                "verbose_name": "interaction search",
                "verbose_name_plural": "interaction search",
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("search.searchdocument",),
        ),
        migrations.RunSQL(
            sql=(
                "CREATE INDEX IF NOT EXISTS embedding_hnsw_384_91cfbf68dca7 ON search_embedding"
                " USING hnsw ((vector::vector(384)) vector_cosine_ops)"
                " WITH (m = 16, ef_construction = 64)"
                " WHERE model = 'sentence-transformers/all-MiniLM-L6-v2' AND dims = 384"
            ),
            reverse_sql="DROP INDEX IF EXISTS embedding_hnsw_384_91cfbf68dca7",
        ),
    ]
