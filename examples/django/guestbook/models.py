from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=280)
    created = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return self.text if len(self.text) <= 50 else self.text[:49] + "…"
